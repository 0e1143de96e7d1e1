//===- GpuBuilder.cpp - IR construction for generated GPU kernels ---------===//

#include "compact/Conversion/GpuBuilder.h"

#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/NVGPU/IR/NVGPUDialect.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"

using namespace mlir;
using namespace mlir::compact;

void GpuBuilder::loop(Value lb, Value ub, Value step,
                      function_ref<void(GpuBuilder &, Value)> body) {
  forLoop(lb, ub, step, [&](LoopBuilder &l, Value iv) {
    GpuBuilder inner(l.builder(), l.location());
    body(inner, iv);
  });
}

SmallVector<Value>
GpuBuilder::loop(Value lb, Value ub, Value step, ValueRange inits,
                 function_ref<SmallVector<Value>(GpuBuilder &, Value, ValueRange)> body) {
  auto op = scf::ForOp::create(builder(), location(), lb, ub, step, inits,
                               [&](OpBuilder &nested, Location l, Value iv, ValueRange iters) {
                                 GpuBuilder inner(nested, l);
                                 scf::YieldOp::create(nested, l, body(inner, iv, iters));
                               });
  return SmallVector<Value>(op.getResults().begin(), op.getResults().end());
}

void GpuBuilder::when(Value cond, function_ref<void(GpuBuilder &)> body) {
  ifThen(cond, [&](LoopBuilder &l) {
    GpuBuilder inner(l.builder(), l.location());
    body(inner);
  });
}

static void eraseTerminator(Block &block) {
  if (!block.empty() && block.back().hasTrait<OpTrait::IsTerminator>())
    block.back().erase();
}

SmallVector<Value> GpuBuilder::when(Value cond, TypeRange types,
                                    function_ref<SmallVector<Value>(GpuBuilder &)> thenBody,
                                    function_ref<SmallVector<Value>(GpuBuilder &)> elseBody) {
  auto op = scf::IfOp::create(builder(), location(), types, cond, /*withElseRegion=*/true);
  auto fill = [&](Block &block, function_ref<SmallVector<Value>(GpuBuilder &)> body) {
    OpBuilder::InsertionGuard guard(builder());
    // A region without results comes with a terminator: the body and the
    // yield go where it was.
    eraseTerminator(block);
    builder().setInsertionPointToEnd(&block);
    GpuBuilder inner(builder(), location());
    SmallVector<Value> values = body(inner);
    scf::YieldOp::create(builder(), location(), values);
  };
  fill(op.getThenRegion().front(), thenBody);
  fill(op.getElseRegion().front(), elseBody);
  return SmallVector<Value>(op.getResults().begin(), op.getResults().end());
}

Value GpuBuilder::laneId() { return rem(threadId(), index(32)); }
Value GpuBuilder::warpId() { return div(threadId(), index(32)); }

Value GpuBuilder::warpUniform(Value value) {
  return gpu::ShuffleOp::create(builder(), location(), value, /*offset=*/0, /*width=*/32,
                                gpu::ShuffleMode::IDX)
      .getShuffleResult();
}

void GpuBuilder::barrier() { gpu::BarrierOp::create(builder(), location()); }

Value GpuBuilder::shuffleXor(Value value, int32_t offset) {
  return gpu::ShuffleOp::create(builder(), location(), value, offset, /*width=*/32,
                                gpu::ShuffleMode::XOR)
      .getShuffleResult();
}

Value GpuBuilder::shuffleUp(Value value, int32_t offset) {
  auto shuffle = gpu::ShuffleOp::create(builder(), location(), value, offset, /*width=*/32,
                                        gpu::ShuffleMode::UP);
  return select(shuffle.getValid(), shuffle.getShuffleResult(), value);
}

Value GpuBuilder::warpMax(Value value, ArrayRef<int32_t> offsets) {
  for (int32_t offset : offsets)
    value = maxF(value, shuffleXor(value, offset));
  return value;
}

Value GpuBuilder::warpSum(Value value, ArrayRef<int32_t> offsets) {
  for (int32_t offset : offsets)
    value = addF(value, shuffleXor(value, offset));
  return value;
}

Value GpuBuilder::ballot(Value pred) {
  return NVVM::VoteSyncOp::create(
      builder(), location(), builder().getI32Type(), i32(-1), pred,
      NVVM::VoteSyncKindAttr::get(builder().getContext(), NVVM::VoteSyncKind::ballot));
}

Value GpuBuilder::exp2(Value x) {
  return LLVM::CallIntrinsicOp::create(builder(), location(), builder().getF32Type(),
                                       builder().getStringAttr("llvm.nvvm.ex2.approx.ftz.f"),
                                       ValueRange{x})
      .getResult(0);
}

Value GpuBuilder::log2(Value x) {
  return LLVM::CallIntrinsicOp::create(builder(), location(), builder().getF32Type(),
                                       builder().getStringAttr("llvm.nvvm.lg2.approx.ftz.f"),
                                       ValueRange{x})
      .getResult(0);
}

SmallVector<Value, 4> GpuBuilder::ldmatrix(Value smem, ValueRange indices, int tiles,
                                           bool transpose) {
  Type element = cast<MemRefType>(smem.getType()).getElementType();
  auto type = VectorType::get({tiles, 2}, element);
  Value frags = nvgpu::LdMatrixOp::create(builder(), location(), type, smem, indices,
                                          builder().getBoolAttr(transpose),
                                          builder().getI32IntegerAttr(tiles));
  SmallVector<Value, 4> regs;
  for (int i = 0; i < tiles; ++i) {
    Value pair = vector::ExtractOp::create(builder(), location(), frags, ArrayRef<int64_t>{i});
    regs.push_back(LLVM::BitcastOp::create(builder(), location(), builder().getI32Type(), pair));
  }
  return regs;
}

SmallVector<Value, 4> GpuBuilder::mma16816(ArrayRef<Value> a, ArrayRef<Value> b,
                                           ArrayRef<Value> c, Type elementType) {
  MLIRContext *ctx = builder().getContext();
  Type f32 = builder().getF32Type();
  auto resultType = LLVM::LLVMStructType::getLiteral(ctx, {f32, f32, f32, f32});
  NVVM::MMATypes ptxType =
      elementType.isBF16() ? NVVM::MMATypes::bf16 : NVVM::MMATypes::f16;
  // nvvm.mma.sync takes bf16 pairs as i32 and f16 pairs as vector<2xf16>.
  auto operands = [&](ArrayRef<Value> regs) {
    SmallVector<Value, 4> out(regs.begin(), regs.end());
    if (elementType.isF16())
      for (Value &v : out)
        v = LLVM::BitcastOp::create(builder(), location(), VectorType::get({2}, elementType), v);
    return out;
  };
  Value d = NVVM::MmaOp::create(builder(), location(), resultType, operands(a), operands(b), c,
                                /*shape=*/{16, 8, 16}, std::nullopt, std::nullopt,
                                std::array<NVVM::MMATypes, 2>{ptxType, ptxType},
                                std::array<NVVM::MMALayout, 2>{NVVM::MMALayout::row,
                                                               NVVM::MMALayout::col});
  SmallVector<Value, 4> out;
  for (int64_t i = 0; i < 4; ++i)
    out.push_back(LLVM::ExtractValueOp::create(builder(), location(), d, i));
  return out;
}

Value GpuBuilder::pack2(Value lo, Value hi, Type elementType) {
  auto f32x2 = VectorType::get({2}, builder().getF32Type());
  Value pair = vector::FromElementsOp::create(builder(), location(), f32x2, ValueRange{lo, hi});
  Value narrow = truncF(pair, VectorType::get({2}, elementType));
  return LLVM::BitcastOp::create(builder(), location(), builder().getI32Type(), narrow);
}

Value GpuBuilder::copyAsync16(Value dst, ValueRange dstIndices, Value src,
                              ValueRange srcIndices, Value valid) {
  Value elements = select(valid, index(8), index(0));
  return nvgpu::DeviceAsyncCopyOp::create(
      builder(), location(), nvgpu::DeviceAsyncTokenType::get(builder().getContext()), dst,
      dstIndices, src, srcIndices, builder().getIndexAttr(8), elements,
      builder().getUnitAttr());
}

void GpuBuilder::commitGroup(ValueRange tokens) {
  nvgpu::DeviceAsyncCreateGroupOp::create(
      builder(), location(), nvgpu::DeviceAsyncTokenType::get(builder().getContext()), tokens);
}

void GpuBuilder::waitGroups(int32_t pending) {
  // The group token only orders the IR; the wait counts groups in flight.
  NVVM::CpAsyncWaitGroupOp::create(builder(), location(), pending);
}

Value GpuBuilder::sharedView(Value base, int64_t byteOffset, ArrayRef<int64_t> shape,
                             Type elementType) {
  auto baseType = cast<MemRefType>(base.getType());
  auto type = MemRefType::get(shape, elementType, MemRefLayoutAttrInterface(),
                              baseType.getMemorySpace());
  return memref::ViewOp::create(builder(), location(), type, base, index(byteOffset),
                                ValueRange{});
}

void GpuBuilder::atomicOr(Value value, Value memref, ValueRange indices) {
  memref::AtomicRMWOp::create(builder(), location(), arith::AtomicRMWKind::ori, value, memref,
                              indices);
}

Value mlir::compact::swizzledColumn(LoopBuilder &lb, Value row, Value col) {
  Value chunk = lb.div(col, lb.index(8));
  Value swizzled = arith::XOrIOp::create(lb.builder(), lb.location(), chunk,
                                         lb.rem(row, lb.index(8)));
  return lb.mul(swizzled, lb.index(8));
}

//===----------------------------------------------------------------------===//
// Hopper warpgroup MMA
//===----------------------------------------------------------------------===//

namespace {

Value inlineAsm(GpuBuilder &gb, Type result, ValueRange operands, StringRef text,
                StringRef constraints) {
  auto op = LLVM::InlineAsmOp::create(
      gb.builder(), gb.location(), result, operands, gb.builder().getStringAttr(text),
      gb.builder().getStringAttr(constraints), gb.builder().getUnitAttr(), UnitAttr(),
      LLVM::TailCallKindAttr::get(gb.builder().getContext(), LLVM::TailCallKind::None),
      LLVM::AsmDialectAttr::get(gb.builder().getContext(), LLVM::AsmDialect::AD_ATT),
      ArrayAttr());
  return op.getNumResults() ? op.getResult(0) : Value();
}

} // namespace

Value GpuBuilder::rereadBlockId(gpu::Dimension d) {
  const char *text = d == gpu::Dimension::x   ? "mov.u32 $0, %ctaid.x;"
                     : d == gpu::Dimension::y ? "mov.u32 $0, %ctaid.y;"
                                              : "mov.u32 $0, %ctaid.z;";
  return toIndex(inlineAsm(*this, builder().getI32Type(), {}, text, "=r"));
}

void GpuBuilder::mbarrierInit(Value address, int64_t count) {
  inlineAsm(*this, Type(), {address},
            "mbarrier.init.shared::cta.b64 [$0], " + std::to_string(count) + ";", "r");
}

void GpuBuilder::mbarrierInit(Value address, Value count) {
  inlineAsm(*this, Type(), {address, count}, "mbarrier.init.shared::cta.b64 [$0], $1;", "r,r");
}

void GpuBuilder::mbarrierWait(Value address, Value parity) {
  // try_wait suspends for a while before it fails; the loop retries. The
  // labels are local to the braces, so the statement can appear many times.
  inlineAsm(*this, Type(), {address, parity},
            "{\n.reg .pred done;\nwait_again:\n"
            "mbarrier.try_wait.parity.shared::cta.b64 done, [$0], $1;\n"
            "@!done bra wait_again;\n}",
            "r,r");
}

void GpuBuilder::mbarrierArriveIf(Value address, Value flag) {
  Value flag32 = arith::ExtUIOp::create(builder(), location(), builder().getI32Type(), flag);
  inlineAsm(*this, Type(), {address, flag32},
            "{\n.reg .pred p;\nsetp.ne.u32 p, $1, 0;\n"
            "@p mbarrier.arrive.shared::cta.b64 _, [$0];\n}",
            "r,r");
}

void GpuBuilder::mbarrierArriveInClusterIf(Value address, Value rank, Value flag) {
  Value flag32 = arith::ExtUIOp::create(builder(), location(), builder().getI32Type(), flag);
  inlineAsm(*this, Type(), {address, rank, flag32},
            "{\n.reg .pred p;\n.reg .b32 remote;\nsetp.ne.u32 p, $2, 0;\n"
            "@p mapa.shared::cluster.u32 remote, $0, $1;\n"
            "@p mbarrier.arrive.shared::cluster.b64 _, [remote];\n}",
            "r,r,r");
}

Value GpuBuilder::clusterRank() {
  return inlineAsm(*this, builder().getI32Type(), {}, "mov.u32 $0, %cluster_ctarank;", "=r");
}

Value GpuBuilder::clusterBlocks() {
  return inlineAsm(*this, builder().getI32Type(), {}, "mov.u32 $0, %cluster_nctarank;", "=r");
}

Value GpuBuilder::clusterBlocksX() {
  return inlineAsm(*this, builder().getI32Type(), {}, "mov.u32 $0, %cluster_nctaid.x;", "=r");
}

void GpuBuilder::clusterBarrier() {
  ptx("barrier.cluster.arrive.release;\nbarrier.cluster.wait.acquire;");
}

void GpuBuilder::mbarrierArriveExpectTx(Value address, int64_t bytes) {
  inlineAsm(*this, Type(), {address},
            "mbarrier.arrive.expect_tx.shared::cta.b64 _, [$0], " + std::to_string(bytes) + ";",
            "r");
}

void GpuBuilder::tensorCopy(Value destination, Value tensorMap, ValueRange coordinates,
                            Value barrier, Value multicastMask) {
  MLIRContext *ctx = builder().getContext();
  auto shared = LLVM::LLVMPointerType::get(ctx, /*addressSpace=*/3);
  // The copy writes shared::cluster; this block's own window is part of it.
  auto cluster = LLVM::LLVMPointerType::get(ctx, /*addressSpace=*/7);
  Value dst = LLVM::AddrSpaceCastOp::create(
      builder(), location(), cluster,
      LLVM::IntToPtrOp::create(builder(), location(), shared, destination));
  Value bar = LLVM::IntToPtrOp::create(builder(), location(), shared, barrier);
  NVVM::CpAsyncBulkTensorGlobalToSharedClusterOp::create(
      builder(), location(), dst, tensorMap, coordinates, bar, /*im2colOffsets=*/ValueRange(),
      multicastMask, /*l2CacheHint=*/Value(), NVVM::TMALoadMode::TILE,
      /*isCTAOnly=*/false, /*group=*/NVVM::CTAGroupKindAttr(), /*predicate=*/Value());
}

namespace {

SmallVector<Value> unpack(GpuBuilder &gb, Value structValue, size_t n) {
  SmallVector<Value> out;
  for (size_t i = 0; i < n; ++i)
    out.push_back(LLVM::ExtractValueOp::create(gb.builder(), gb.location(), structValue,
                                               int64_t(i)));
  return out;
}

Type structOf(MLIRContext *ctx, TypeRange types) {
  return LLVM::LLVMStructType::getLiteral(ctx, SmallVector<Type>(types.begin(), types.end()));
}

/// "$first, ..., $(first + n - 1)"
std::string operandList(size_t first, size_t n) {
  std::string s;
  for (size_t i = 0; i < n; ++i)
    s += (i ? ", $" : "$") + std::to_string(first + i);
  return s;
}

const char *ptxType(Type element) { return element.isBF16() ? "bf16" : "f16"; }

} // namespace

void GpuBuilder::ptx(StringRef statement) { inlineAsm(*this, Type(), {}, statement, ""); }

SmallVector<Value> GpuBuilder::fenceOperands(ValueRange values) {
  if (values.empty())
    return {};
  std::string constraints;
  for (size_t i = 0; i < values.size(); ++i)
    constraints += values[i].getType().isF32() ? "=f," : "=r,";
  for (size_t i = 0; i < values.size(); ++i)
    constraints += std::to_string(i) + (i + 1 < values.size() ? "," : "");
  Value packed = inlineAsm(*this, structOf(builder().getContext(), values.getTypes()), values, "",
                           constraints);
  return unpack(*this, packed, values.size());
}

SmallVector<Value> GpuBuilder::wgmmaShared(int64_t n, Type elementType, Value descA, Value descB,
                                           ValueRange acc, bool accumulate) {
  size_t regs = size_t(n / 2);
  std::string text = "{\n.reg .pred p;\nsetp.ne.b32 p, $" + std::to_string(regs + 2) +
                     ", 0;\nwgmma.mma_async.sync.aligned.m64n" + std::to_string(n) + "k16.f32." +
                     ptxType(elementType) + "." + ptxType(elementType) + " {" +
                     operandList(0, regs) + "}, $" + std::to_string(regs) + ", $" +
                     std::to_string(regs + 1) + ", p, 1, 1, 0, 0;\n}";
  std::string constraints;
  for (size_t i = 0; i < regs; ++i)
    constraints += "=f,";
  constraints += "l,l,r";
  for (size_t i = 0; i < regs; ++i)
    constraints += "," + std::to_string(i);
  SmallVector<Value> operands = {descA, descB, i32(accumulate ? 1 : 0)};
  operands.append(acc.begin(), acc.end());
  SmallVector<Type> types(regs, builder().getF32Type());
  return unpack(*this, inlineAsm(*this, structOf(builder().getContext(), types), operands, text,
                                 constraints),
                regs);
}

SmallVector<Value> GpuBuilder::wgmmaRegisterA(int64_t n, Type elementType, ArrayRef<Value> a,
                                              Value descB, ValueRange acc, bool transposeB) {
  size_t regs = size_t(n / 2);
  std::string text = "{\n.reg .pred p;\nsetp.ne.b32 p, $" + std::to_string(regs + 5) +
                     ", 0;\nwgmma.mma_async.sync.aligned.m64n" + std::to_string(n) + "k16.f32." +
                     ptxType(elementType) + "." + ptxType(elementType) + " {" +
                     operandList(0, regs) + "}, {" + operandList(regs, 4) + "}, $" +
                     std::to_string(regs + 4) + ", p, 1, 1, " + (transposeB ? "1" : "0") +
                     ";\n}";
  std::string constraints;
  for (size_t i = 0; i < regs; ++i)
    constraints += "=f,";
  constraints += "r,r,r,r,l,r";
  for (size_t i = 0; i < regs; ++i)
    constraints += "," + std::to_string(i);
  SmallVector<Value> operands(a.begin(), a.end());
  operands.push_back(descB);
  operands.push_back(i32(1));
  operands.append(acc.begin(), acc.end());
  SmallVector<Type> types(regs, builder().getF32Type());
  return unpack(*this, inlineAsm(*this, structOf(builder().getContext(), types), operands, text,
                                 constraints),
                regs);
}

Value GpuBuilder::wgmmaDescriptor(Value address, int64_t leadingBytes, int64_t strideBytes) {
  Type i64 = builder().getI64Type();
  auto constant = [&](int64_t v) {
    return arith::ConstantIntOp::create(builder(), location(), i64, v).getResult();
  };
  Value start = arith::ShRUIOp::create(
      builder(), location(),
      arith::AndIOp::create(builder(), location(), address, constant(0x3FFFF)), constant(4));
  int64_t fixed = ((leadingBytes >> 4) << 16) | ((strideBytes >> 4) << 32) | (int64_t(1) << 62);
  return arith::OrIOp::create(builder(), location(), start, constant(fixed));
}
