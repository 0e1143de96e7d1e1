//===- DataKernels.cpp - append, pooling and dense tables on the GPU ------===//
//
// The memory-bound kernels around selection and attention:
//   append_kv    one thread per 16 bytes of the chunk's K/V rows
//   pool_keys    one block per (touched KV block, kv head, sequence), one
//                thread per head-dim element, fp32 sums
//   dense_table  one block per (table row, sequence)
//
//===----------------------------------------------------------------------===//

#include "KernelPlan.h"

#include "mlir/Dialect/MemRef/IR/MemRef.h"

using namespace mlir;
using namespace mlir::compact;
using namespace mlir::compact::gpu_lowering;
using arith::CmpIPredicate;

SmallVector<Value, 4> gpu_lowering::cacheIndices(KVLayout layout, Value page, Value slot,
                                                 Value head, Value x) {
  if (layout == KVLayout::NHD)
    return {page, slot, head, x};
  return {page, head, slot, x};
}

int64_t gpu_lowering::cachePageSize(Value cache, KVLayout layout) {
  return staticDim(cache, layout == KVLayout::NHD ? 1 : 2);
}

int64_t gpu_lowering::cacheKVHeads(Value cache, KVLayout layout) {
  return staticDim(cache, layout == KVLayout::NHD ? 2 : 1);
}

FailureOr<Plans> gpu_lowering::planAppendKV(AppendKVOp op, LoopBuilder &host) {
  // From the cache: the verifier makes its dims static (k_new's may be dynamic).
  const int64_t kvHeads = cacheKVHeads(op.getKCache(), op.getLayout());
  const int64_t headDim = staticDim(op.getKCache(), 3);
  const int64_t pageSize = cachePageSize(op.getKCache(), op.getLayout());
  if (headDim % 8 != 0)
    return op.emitOpError() << "GPU lowering needs a head dim that is a multiple of 8, got "
                            << headDim;
  const int64_t chunksPerRow = headDim / 8, threads = 256;
  const KVLayout layout = op.getLayout();
  Type element = elementType(op.getKNew());

  KernelPlan plan;
  plan.role = "append";
  plan.args = {{"k_new", op.getKNew()},       {"v_new", op.getVNew()},
               {"page_table", op.getPageTable()}, {"ctx_lens", op.getCtxLens()},
               {"k_cache", op.getKCache()},   {"v_cache", op.getVCache()}};
  Value chunkLen = host.dim(op.getKNew(), 1);
  Value work = host.mul(chunkLen, host.index(kvHeads * chunksPerRow));
  plan.grid = {host.ceilDiv(work, host.index(threads)), host.dim(op.getKNew(), 0), host.index(1)};
  plan.block = {threads, 1, 1};
  plan.gridRule = "[ceil(C * Hkv * D / 8 / 256), B, 1]";
  plan.body = [=](GpuBuilder &gb, ValueRange args, Value) {
    Value kNew = args[0], vNew = args[1], pageTable = args[2], ctxLens = args[3];
    Value kCache = args[4], vCache = args[5];
    Value b = gb.blockId(gpu::Dimension::y);
    Value i = gb.add(gb.mul(gb.blockId(gpu::Dimension::x), gb.index(threads)), gb.threadId());
    Value x = gb.mul(gb.rem(i, gb.index(chunksPerRow)), gb.index(8));
    Value rest = gb.div(i, gb.index(chunksPerRow));
    Value h = gb.rem(rest, gb.index(kvHeads)), t = gb.div(rest, gb.index(kvHeads));
    Value c = gb.dim(kNew, 1);
    gb.ifThen(gb.cmp(CmpIPredicate::ult, t, c), [&](LoopBuilder &l) {
      Value pos = l.add(l.sub(l.toIndex(l.load(ctxLens, {b})), c), t);
      Value page = l.toIndex(l.load(pageTable, {b, l.div(pos, l.index(pageSize))}));
      SmallVector<Value, 4> dst =
          cacheIndices(layout, page, l.rem(pos, l.index(pageSize)), h, x);
      auto row = VectorType::get({8}, element);
      l.storeVector(l.loadVector(kNew, {b, t, h, x}, row, 16), kCache, dst, 16);
      l.storeVector(l.loadVector(vNew, {b, t, h, x}, row, 16), vCache, dst, 16);
    });
  };
  return Plans{std::move(plan)};
}

FailureOr<Plans> gpu_lowering::planPoolKeys(PoolKeysOp op, LoopBuilder &host) {
  const KVLayout layout = op.getLayout();
  const int64_t pageSize = cachePageSize(op.getKCache(), layout);
  const int64_t kvHeads = cacheKVHeads(op.getKCache(), layout);
  const int64_t headDim = staticDim(op.getKCache(), 3), bs = op.getBlockSize();
  if (headDim > 1024)
    return op.emitOpError() << "GPU lowering needs a head dim of at most 1024, got " << headDim;

  KernelPlan plan;
  plan.role = "pool";
  plan.args = {{"k_cache", op.getKCache()},
               {"page_table", op.getPageTable()},
               {"ctx_lens", op.getCtxLens()},
               {"chunk_len", op.getChunkLen()},
               {"pooled", op.getPooled()}};
  // A chunk of C tokens touches at most ceil(C / bs) + 1 blocks.
  Value touched = host.add(host.ceilDiv(op.getChunkLen(), host.index(bs)), host.index(1));
  plan.grid = {touched, host.index(kvHeads), host.dim(op.getPooled(), 0)};
  plan.block = {headDim, 1, 1};
  plan.gridRule = "[ceil(C / bs) + 1, Hkv, B]";
  plan.body = [=](GpuBuilder &gb, ValueRange args, Value) {
    Value kCache = args[0], pageTable = args[1], ctxLens = args[2], chunkLen = args[3];
    Value pooled = args[4];
    Value b = gb.blockId(gpu::Dimension::z), h = gb.blockId(gpu::Dimension::y);
    Value x = gb.threadId();
    SeqGeometryIR g = SeqGeometryIR::build(gb, gb.toIndex(gb.load(ctxLens, {b})), chunkLen, bs);
    Value kb = gb.add(g.firstChunkBlock, gb.blockId(gpu::Dimension::x));
    gb.ifThen(gb.cmp(CmpIPredicate::ult, kb, g.numBlocks), [&](LoopBuilder &l) {
      Value begin = g.blockBegin(l, kb), end = g.blockEnd(l, kb);
      Type f32 = l.builder().getF32Type();
      Value sum = l.forLoop(begin, end, {l.f32(0.0f)},
                            [&](LoopBuilder &lj, Value j, ValueRange acc) {
                              Value page = lj.toIndex(
                                  lj.load(pageTable, {b, lj.div(j, lj.index(pageSize))}));
                              Value k = lj.load(kCache, cacheIndices(layout, page,
                                                                     lj.rem(j, lj.index(pageSize)),
                                                                     h, x));
                              return SmallVector<Value>{lj.addF(acc[0], lj.castF(k, f32))};
                            })[0];
      Value count = arith::UIToFPOp::create(
          l.builder(), l.location(), f32,
          arith::IndexCastUIOp::create(l.builder(), l.location(), l.builder().getI32Type(),
                                       l.sub(end, begin)));
      l.store(l.castF(l.divF(sum, count), elementType(pooled)), pooled, {b, h, kb, x});
    });
  };
  return Plans{std::move(plan)};
}

FailureOr<Plans> gpu_lowering::planDenseTable(DenseTableOp op, LoopBuilder &host) {
  const int64_t bs = op.getBlockSize(), threads = 256;
  KernelPlan plan;
  plan.role = "dense";
  plan.args = {{"ctx_lens", op.getCtxLens()}, {"table", op.getTable()}, {"counts", op.getCounts()}};
  plan.grid = {host.dim(op.getTable(), 1), host.dim(op.getTable(), 0), host.index(1)};
  plan.block = {threads, 1, 1};
  plan.gridRule = "[E, B, 1]";
  plan.body = [=](GpuBuilder &gb, ValueRange args, Value) {
    Value ctxLens = args[0], table = args[1], counts = args[2];
    Value e = gb.blockId(gpu::Dimension::x), b = gb.blockId(gpu::Dimension::y);
    Value numBlocks = gb.ceilDiv(gb.toIndex(gb.load(ctxLens, {b})), gb.index(bs));
    gb.forLoop(gb.threadId(), gb.dim(table, 2), gb.index(threads), [&](LoopBuilder &l, Value kb) {
      Value in = l.cmp(CmpIPredicate::ult, kb, numBlocks);
      l.store(l.select(in, l.toI32(kb), l.i32(-1)), table, {b, e, kb});
    });
    gb.ifThen(gb.cmp(CmpIPredicate::eq, gb.threadId(), gb.index(0)),
              [&](LoopBuilder &l) { l.store(l.toI32(numBlocks), counts, {b, e}); });
  };
  return Plans{std::move(plan)};
}
