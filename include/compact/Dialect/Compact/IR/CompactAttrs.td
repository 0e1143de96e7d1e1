//===- CompactAttrs.td - compact dialect attributes --------*- tablegen -*-===//

#ifndef COMPACT_DIALECT_COMPACT_IR_COMPACTATTRS_TD
#define COMPACT_DIALECT_COMPACT_IR_COMPACTATTRS_TD

include "compact/Dialect/Compact/IR/CompactDialect.td"
include "mlir/IR/AttrTypeBase.td"
include "mlir/IR/EnumAttr.td"

//===----------------------------------------------------------------------===//
// KV cache layout
//===----------------------------------------------------------------------===//

def Compact_KVLayoutNHD : I32EnumAttrCase<"NHD", 0, "nhd">;
def Compact_KVLayoutHND : I32EnumAttrCase<"HND", 1, "hnd">;
def Compact_KVLayout : I32EnumAttr<"KVLayout",
    "layout of a paged KV cache",
    [Compact_KVLayoutNHD, Compact_KVLayoutHND]> {
  let genSpecializedAttr = 0;
  let cppNamespace = "::mlir::compact";
  let description = [{
    `nhd`: `[pages, page_size, kv_heads, head_dim]` (token-major pages, as
    vLLM stores them); `hnd`: `[pages, kv_heads, page_size, head_dim]`
    (head-major pages, as FlashInfer stores them).
  }];
}
def Compact_KVLayoutAttr : EnumAttr<Compact_Dialect, Compact_KVLayout, "layout"> {
  let assemblyFormat = "`<` $value `>`";
}

//===----------------------------------------------------------------------===//
// Selection threshold
//===----------------------------------------------------------------------===//

def Compact_ThresholdRowMaxLog : I32EnumAttrCase<"RowMaxLog", 0, "rowmax_log">;
def Compact_ThresholdRowMax    : I32EnumAttrCase<"RowMax", 1, "rowmax">;
def Compact_ThresholdAbsolute  : I32EnumAttrCase<"Absolute", 2, "absolute">;
def Compact_ThresholdMode : I32EnumAttr<"ThresholdMode",
    "how a block score is compared with the threshold",
    [Compact_ThresholdRowMaxLog, Compact_ThresholdRowMax,
     Compact_ThresholdAbsolute]> {
  let genSpecializedAttr = 0;
  let cppNamespace = "::mlir::compact";
  let description = [{
    `rowmax_log`: scores are logarithms (as `compact.block_scores` makes
    them); keep `score >= rowmax + ln(threshold)`, i.e. the FlashPrefill rule
    `exp(score) >= alpha * exp(rowmax)` with `alpha = threshold`.
    `rowmax`: scores are on a linear scale (e.g. gate probabilities); keep
    `score >= threshold * rowmax`.
    `absolute`: keep `score >= threshold`.
    The row max is taken over the causally valid blocks of one
    (sequence, head, query block) row.
  }];
}
def Compact_ThresholdModeAttr : EnumAttr<Compact_Dialect, Compact_ThresholdMode, "threshold"> {
  let assemblyFormat = "`<` $value `>`";
}

#endif // COMPACT_DIALECT_COMPACT_IR_COMPACTATTRS_TD
