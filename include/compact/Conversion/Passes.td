//===- Passes.td - conversions out of the compact dialect --*- tablegen -*-===//

#ifndef COMPACT_CONVERSION_PASSES_TD
#define COMPACT_CONVERSION_PASSES_TD

include "mlir/Pass/PassBase.td"

def ConvertCompactToLoops : Pass<"convert-compact-to-loops", "func::FuncOp"> {
  let summary = "lower compact ops to scf loops over memrefs (the CPU path)";
  let description = [{
    Lowers every compact op to a loop nest of `scf`, `arith`, `math` and
    `memref` ops that computes exactly what the op's definition says. This is
    the host target of the dialect: the `compact-cpu-pipeline` takes the
    result to the LLVM dialect, and `compact-run` executes it.

    Selection (pooling, scores, thresholds, unions, tables) is computed in
    the same order and precision as the C++ reference (fp64 accumulation), so
    tables come out bit-identical to it. Attention is the FlashAttention
    recurrence over a tile of query rows: for each block of the group's
    table, scores `S = scale * Q K^T` with the causal mask, then the online
    softmax update (new row max, rescale of the running sum and accumulator,
    `P = exp(S - m)`), then `acc += P V`; fp32 throughout.
  }];
  let dependentDialects = ["::mlir::scf::SCFDialect",
                           "::mlir::arith::ArithDialect",
                           "::mlir::math::MathDialect",
                           "::mlir::memref::MemRefDialect",
                           "::mlir::vector::VectorDialect"];
  let options = [
    Option<"rowTile", "row-tile", "int64_t", /*default=*/"16",
           "query rows that share one walk over the table (attention)">,
  ];
}

#endif // COMPACT_CONVERSION_PASSES_TD
