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

def ConvertCompactToGPU : Pass<"convert-compact-to-gpu", "ModuleOp"> {
  let summary = "lower compact ops to GPU kernels (gpu / nvgpu / nvvm)";
  let description = [{
    Outlines every compact op into one or more kernels (`gpu.func` in
    `gpu.module @compact_kernels`) and replaces it with `gpu.launch_func`s.
    Matrix products run on the Hopper tensor cores (sm_90a):

    * `compact.paged_attention`: FlashAttention-2 style, one block of two
      warpgroups per 128 GQA-packed query rows of an execution group; K/V
      pages are read in place through the block table and the page table
      (cp.async into 128-byte-swizzled tiles, two stages), S = Q K^T and
      O += P V are `wgmma.mma_async` (inline PTX, shared-memory
      descriptors; P stays in registers). `compact.matrix_path =
      "mma_sync"` selects the sm_80 path (ldmatrix + mma.sync m16n8k16);
    * `compact.block_scores` / `compact.score_select_union`: S^T = K̄ Q^T
      with `wgmma` (64 pooled keys per warpgroup against every query of the
      block), row log-sum-exp in registers, then (fused) threshold and
      union into the table without writing scores or masks;
    * `compact.select_blocks`, `compact.block_union`, `compact.select_union`,
      `compact.dense_table`, `compact.append_kv`, `compact.pool_keys`:
      memory-bound kernels.

    Each kernel records its block size and grid rule in `compact.block` and
    `compact.grid`; the runtime launches them with the same rules.
  }];
  let dependentDialects = ["::mlir::gpu::GPUDialect",
                           "::mlir::nvgpu::NVGPUDialect",
                           "::mlir::NVVM::NVVMDialect",
                           "::mlir::LLVM::LLVMDialect",
                           "::mlir::scf::SCFDialect",
                           "::mlir::arith::ArithDialect",
                           "::mlir::math::MathDialect",
                           "::mlir::memref::MemRefDialect",
                           "::mlir::vector::VectorDialect"];
}

#endif // COMPACT_CONVERSION_PASSES_TD
