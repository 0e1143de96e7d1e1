//===- Passes.td - compact dialect transformations ---------*- tablegen -*-===//

#ifndef COMPACT_DIALECT_COMPACT_TRANSFORMS_PASSES_TD
#define COMPACT_DIALECT_COMPACT_TRANSFORMS_PASSES_TD

include "mlir/Pass/PassBase.td"

def CompactFuseSelection : Pass<"compact-fuse-selection", "func::FuncOp"> {
  let summary = "fuse scoring, thresholding and block union so masks never reach memory";
  let description = [{
    Rewrites

    ```
    compact.select_blocks %scores ... into %mask
    compact.block_union %mask ... into %table, %counts
    ```

    into `compact.select_union %scores ... into %table, %counts`, and then

    ```
    compact.block_scores %q, %pooled, %ctx_lens into %scores
    compact.select_union %scores ... into %table, %counts
    ```

    into `compact.score_select_union %q, %pooled, %ctx_lens into %table,
    %counts`, when the intermediate buffer is a temporary of the function
    (`memref.alloc` / `memref.alloca` used only by the two ops and its
    `memref.dealloc`), both ops agree on the block geometry, and nothing
    between them touches memory. The temporary is then erased. A mask or score
    buffer that comes from outside (an external mask, a learned gate's
    scores) is kept, and so is the unfused path.
  }];
  let dependentDialects = ["::mlir::compact::CompactDialect",
                           "::mlir::memref::MemRefDialect"];
}

#endif // COMPACT_DIALECT_COMPACT_TRANSFORMS_PASSES_TD
