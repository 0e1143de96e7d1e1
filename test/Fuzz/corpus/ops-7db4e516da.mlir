func.func @append_kv(%k: memref<?x?x4x128xbf16>, %v: memref<?x?x4x128xbf16>,
                     %pt: memref<?x?xi32>, %lens: memref<?xi32>,
                     %kc: memref<?x4x64x128xbf16>, %vc: memref<?x4x64x128xbf16>) {
  compact.append_kv %k, %v, %pt, %lens into %kc, %vc {layout = #compact.layout<hnd>}
      : memref<?x?x4x128xbf16>, memref<?x?x4x128xbf16>, memref<?x?xi32>, memref<?xi32>
        into memref<?x4x64x128xbf16>, memref<?x4x64x128xbf16>
  return
}
