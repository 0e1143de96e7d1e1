//===- LoopBuilder.cpp - terse IR construction for lowerings --------------===//

#include "compact/Conversion/LoopBuilder.h"

#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/IR/TypeUtilities.h"

#include <limits>

using namespace mlir;
using namespace mlir::compact;

Value LoopBuilder::index(int64_t v) {
  return arith::ConstantIndexOp::create(b, loc, v);
}
Value LoopBuilder::i32(int32_t v) {
  return arith::ConstantIntOp::create(b, loc, b.getI32Type(), v);
}
Value LoopBuilder::boolean(bool v) {
  return arith::ConstantIntOp::create(b, loc, b.getI1Type(), v);
}
Value LoopBuilder::i8(int8_t v) {
  return arith::ConstantIntOp::create(b, loc, b.getI8Type(), v);
}
Value LoopBuilder::f32(float v) {
  return arith::ConstantFloatOp::create(b, loc, b.getF32Type(), APFloat(v));
}
Value LoopBuilder::f64(double v) {
  return arith::ConstantFloatOp::create(b, loc, b.getF64Type(), APFloat(v));
}
Value LoopBuilder::negInf(Type floatType) {
  auto ft = cast<FloatType>(floatType);
  return arith::ConstantFloatOp::create(
      b, loc, ft, APFloat::getInf(ft.getFloatSemantics(), /*Negative=*/true));
}

Value LoopBuilder::add(Value a, Value c) { return arith::AddIOp::create(b, loc, a, c); }
Value LoopBuilder::sub(Value a, Value c) { return arith::SubIOp::create(b, loc, a, c); }
Value LoopBuilder::mul(Value a, Value c) { return arith::MulIOp::create(b, loc, a, c); }
Value LoopBuilder::div(Value a, Value c) { return arith::DivUIOp::create(b, loc, a, c); }
Value LoopBuilder::rem(Value a, Value c) { return arith::RemUIOp::create(b, loc, a, c); }
Value LoopBuilder::ceilDiv(Value a, Value c) {
  return arith::CeilDivUIOp::create(b, loc, a, c);
}
Value LoopBuilder::min(Value a, Value c) { return arith::MinUIOp::create(b, loc, a, c); }
Value LoopBuilder::max(Value a, Value c) { return arith::MaxUIOp::create(b, loc, a, c); }
Value LoopBuilder::nonNegative(Value i32Value) {
  return arith::MaxSIOp::create(b, loc, i32Value, i32(0));
}
Value LoopBuilder::cmp(arith::CmpIPredicate pred, Value a, Value c) {
  return arith::CmpIOp::create(b, loc, pred, a, c);
}
Value LoopBuilder::andI(Value a, Value c) { return arith::AndIOp::create(b, loc, a, c); }
Value LoopBuilder::orI(Value a, Value c) { return arith::OrIOp::create(b, loc, a, c); }
Value LoopBuilder::notI(Value a) { return arith::XOrIOp::create(b, loc, a, boolean(true)); }
Value LoopBuilder::toIndex(Value v) {
  return arith::IndexCastOp::create(b, loc, b.getIndexType(), v);
}
Value LoopBuilder::toI32(Value v) {
  return arith::IndexCastOp::create(b, loc, b.getI32Type(), v);
}

Value LoopBuilder::addF(Value a, Value c, arith::FastMathFlags fm) {
  return arith::AddFOp::create(b, loc, a, c, fm);
}
Value LoopBuilder::subF(Value a, Value c, arith::FastMathFlags fm) {
  return arith::SubFOp::create(b, loc, a, c, fm);
}
Value LoopBuilder::mulF(Value a, Value c, arith::FastMathFlags fm) {
  return arith::MulFOp::create(b, loc, a, c, fm);
}
Value LoopBuilder::divF(Value a, Value c) { return arith::DivFOp::create(b, loc, a, c); }
Value LoopBuilder::maxF(Value a, Value c) {
  return arith::MaximumFOp::create(b, loc, a, c);
}
Value LoopBuilder::cmpF(arith::CmpFPredicate pred, Value a, Value c) {
  return arith::CmpFOp::create(b, loc, pred, a, c);
}
Value LoopBuilder::exp(Value a) { return math::ExpOp::create(b, loc, a); }
Value LoopBuilder::log(Value a) { return math::LogOp::create(b, loc, a); }
Value LoopBuilder::extF(Value a, Type to) { return arith::ExtFOp::create(b, loc, to, a); }
Value LoopBuilder::truncF(Value a, Type to) {
  return arith::TruncFOp::create(b, loc, to, a);
}
Value LoopBuilder::castF(Value a, Type to) {
  if (a.getType() == to)
    return a;
  unsigned from = getElementTypeOrSelf(a.getType()).getIntOrFloatBitWidth();
  unsigned width = getElementTypeOrSelf(to).getIntOrFloatBitWidth();
  return width > from ? extF(a, to) : truncF(a, to);
}
Value LoopBuilder::select(Value cond, Value a, Value c) {
  return arith::SelectOp::create(b, loc, cond, a, c);
}

Value LoopBuilder::loadVector(Value memref, ValueRange indices, VectorType type,
                              int64_t alignment) {
  return vector::LoadOp::create(b, loc, type, memref, indices, /*nontemporal=*/false,
                                alignment ? llvm::MaybeAlign(alignment) : llvm::MaybeAlign());
}
void LoopBuilder::storeVector(Value vector, Value memref, ValueRange indices,
                              int64_t alignment) {
  vector::StoreOp::create(b, loc, vector, memref, indices, /*nontemporal=*/false,
                          alignment ? llvm::MaybeAlign(alignment) : llvm::MaybeAlign());
}
Value LoopBuilder::broadcast(Value scalar, VectorType type) {
  return vector::BroadcastOp::create(b, loc, type, scalar);
}
Value LoopBuilder::fma(Value a, Value c, Value acc) {
  return vector::FMAOp::create(b, loc, a, c, acc);
}
Value LoopBuilder::reduceAdd(Value vector) {
  return vector::ReductionOp::create(b, loc, vector::CombiningKind::ADD, vector,
                                     arith::FastMathFlags::reassoc);
}

Value LoopBuilder::load(Value memref, ValueRange indices) {
  return memref::LoadOp::create(b, loc, memref, indices);
}
void LoopBuilder::store(Value value, Value memref, ValueRange indices) {
  memref::StoreOp::create(b, loc, value, memref, indices);
}
Value LoopBuilder::dim(Value memref, int64_t d) {
  return memref::DimOp::create(b, loc, memref, d);
}

void LoopBuilder::forLoop(Value lb, Value ub, Value step,
                          function_ref<void(LoopBuilder &, Value)> body) {
  scf::ForOp::create(b, loc, lb, ub, step, ValueRange{},
                     [&](OpBuilder &nested, Location l, Value iv, ValueRange) {
                       LoopBuilder inner(nested, l);
                       body(inner, iv);
                       scf::YieldOp::create(nested, l);
                     });
}

SmallVector<Value> LoopBuilder::forLoop(
    Value lb, Value ub, ValueRange inits,
    function_ref<SmallVector<Value>(LoopBuilder &, Value, ValueRange)> body) {
  auto loop = scf::ForOp::create(
      b, loc, lb, ub, index(1), inits,
      [&](OpBuilder &nested, Location l, Value iv, ValueRange iters) {
        LoopBuilder inner(nested, l);
        scf::YieldOp::create(nested, l, body(inner, iv, iters));
      });
  return SmallVector<Value>(loop.getResults().begin(), loop.getResults().end());
}

void LoopBuilder::allocaScope(function_ref<void(LoopBuilder &)> body) {
  auto scope = memref::AllocaScopeOp::create(b, loc, TypeRange{});
  OpBuilder::InsertionGuard guard(b);
  b.createBlock(&scope.getBodyRegion());
  LoopBuilder inner(b, loc);
  body(inner);
  memref::AllocaScopeReturnOp::create(b, loc);
}

Value LoopBuilder::scratch(ArrayRef<int64_t> shape, Type elementType, ValueRange sizes) {
  return memref::AllocaOp::create(b, loc, MemRefType::get(shape, elementType), sizes);
}

void LoopBuilder::ifThen(Value cond, function_ref<void(LoopBuilder &)> body) {
  scf::IfOp::create(b, loc, cond, [&](OpBuilder &nested, Location l) {
    LoopBuilder inner(nested, l);
    body(inner);
    scf::YieldOp::create(nested, l);
  });
}

Value LoopBuilder::ifThenElse(Value cond, Type type,
                              function_ref<Value(LoopBuilder &)> thenBody,
                              function_ref<Value(LoopBuilder &)> elseBody) {
  auto op = scf::IfOp::create(
      b, loc, cond,
      [&](OpBuilder &nested, Location l) {
        LoopBuilder inner(nested, l);
        scf::YieldOp::create(nested, l, thenBody(inner));
      },
      [&](OpBuilder &nested, Location l) {
        LoopBuilder inner(nested, l);
        scf::YieldOp::create(nested, l, elseBody(inner));
      });
  (void)type;
  return op.getResult(0);
}

SeqGeometryIR SeqGeometryIR::build(LoopBuilder &lb, Value ctxLen, Value chunkLen,
                                   int64_t blockSize) {
  SeqGeometryIR g;
  Value bs = lb.index(blockSize);
  g.ctxLen = ctxLen;
  g.chunkLen = chunkLen;
  g.blockSize = blockSize;
  g.prefixLen = lb.sub(ctxLen, chunkLen);
  g.numBlocks = lb.ceilDiv(ctxLen, bs);
  g.firstChunkBlock = lb.div(g.prefixLen, bs);
  return g;
}

Value SeqGeometryIR::queryBlockBegin(LoopBuilder &lb, Value qb) const {
  return lb.mul(qb, lb.index(blockSize));
}
Value SeqGeometryIR::queryBlockEnd(LoopBuilder &lb, Value qb) const {
  Value next = lb.add(qb, lb.index(1));
  return lb.min(lb.mul(next, lb.index(blockSize)), chunkLen);
}
Value SeqGeometryIR::lastVisibleBlock(LoopBuilder &lb, Value qb) const {
  Value lastRow = lb.sub(lb.add(prefixLen, queryBlockEnd(lb, qb)), lb.index(1));
  return lb.div(lastRow, lb.index(blockSize));
}
Value SeqGeometryIR::blockBegin(LoopBuilder &lb, Value kb) const {
  return lb.mul(kb, lb.index(blockSize));
}
Value SeqGeometryIR::blockEnd(LoopBuilder &lb, Value kb) const {
  Value next = lb.add(kb, lb.index(1));
  return lb.min(lb.mul(next, lb.index(blockSize)), ctxLen);
}
Value SeqGeometryIR::firstScoringRow(LoopBuilder &lb, Value kb) const {
  // P + row >= (kb + 1) * bs - 1  <=>  row >= (kb + 1) * bs - 1 - P (>= 0).
  Value need = lb.sub(lb.mul(lb.add(kb, lb.index(1)), lb.index(blockSize)), lb.index(1));
  Value isAfter = lb.cmp(arith::CmpIPredicate::ugt, need, prefixLen);
  return lb.select(isAfter, lb.sub(need, prefixLen), lb.index(0));
}

TableRowsIR TableRowsIR::build(LoopBuilder &lb, Value tableRows, Value groups) {
  TableRowsIR r;
  r.perGroup = lb.max(lb.div(tableRows, groups), lb.index(1));
  r.perQueryBlock = lb.cmp(arith::CmpIPredicate::ne, r.perGroup, lb.index(1));
  return r;
}
Value TableRowsIR::group(LoopBuilder &lb, Value row) const { return lb.div(row, perGroup); }
Value TableRowsIR::firstQueryBlock(LoopBuilder &lb, Value row) const {
  return lb.select(perQueryBlock, lb.rem(row, perGroup), lb.index(0));
}
Value TableRowsIR::endQueryBlock(LoopBuilder &lb, Value row, Value queryBlocks) const {
  return lb.select(perQueryBlock, lb.add(lb.rem(row, perGroup), lb.index(1)), queryBlocks);
}
Value TableRowsIR::rowOf(LoopBuilder &lb, Value e, Value qb) const {
  return lb.add(lb.mul(e, perGroup), lb.select(perQueryBlock, qb, lb.index(0)));
}
Value TableRowsIR::chunkBlocksBegin(LoopBuilder &lb, const SeqGeometryIR &g, Value row) const {
  Value firstRowPos = lb.add(g.prefixLen, g.queryBlockBegin(lb, firstQueryBlock(lb, row)));
  return lb.div(firstRowPos, lb.index(g.blockSize));
}
Value TableRowsIR::chunkBlocksEnd(LoopBuilder &lb, const SeqGeometryIR &g, Value row,
                                  Value queryBlocks) const {
  Value lastQb = lb.sub(endQueryBlock(lb, row, queryBlocks), lb.index(1));
  return lb.min(lb.add(g.lastVisibleBlock(lb, lastQb), lb.index(1)), g.numBlocks);
}
