func.func @append_kv_value_type(%k: memref<?x?x4x128xbf16>, %v: memref<?x?x4x128xf16>,
    %pt: memref<?x?xi32>, %lens: memref<?xi32>,
    %kc: memref<?x64x4x128xbf16>, %vc: memref<?x64x4x128xbf16>) {
  compact.append_kv %k, %v, %pt, %lens into %kc, %vc
      : memref<?x?x4x128xbf16>, memref<?x?x4x128xf16>, memref<?x?xi32>, memref<?xi32>
        into memref<?x64x4x128xbf16>, memref<?x64x4x128xbf16>
  return
}
