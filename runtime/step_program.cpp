// RowBuilder (contract in step_program.h).
#include "runtime/step_program.h"

#include <cstring>
#include <map>
#include <string>

#include "base/error.h"

namespace diffrt {
namespace {

using namespace step_reg;
constexpr uint16_t kVirt = 1000;

bool is_virtual(uint16_t id) { return id >= kVirt && id != kNone; }

}  // namespace

RowBuilder::Val RowBuilder::slot(int s) const {
  if (s < 1 || s >= kNumPersistent) fail(ErrorCode::Internal, "RowBuilder: slot " + std::to_string(s) + " out of range");
  return Val{uint16_t(s)};
}

RowBuilder::Val RowBuilder::z() {
  reads_z_ = true;
  return Val{kZ};
}

RowBuilder::Val RowBuilder::k(float c) {
  for (size_t i = 0; i < consts_.size(); ++i)
    if (std::memcmp(&consts_[i], &c, sizeof(float)) == 0) return Val{uint16_t(kConst + i)};
  if (consts_.size() >= size_t(kMaxStepConst)) fail(ErrorCode::Internal, "RowBuilder: too many constants in a row");
  consts_.push_back(c);
  return Val{uint16_t(kConst + consts_.size() - 1)};
}

RowBuilder::Val RowBuilder::emit(StepOp op, Val a, Val b) {
  if (a.id == 0xffff || (b.id == 0xffff)) fail(ErrorCode::Internal, "RowBuilder: undefined operand");
  const uint16_t d = next_temp_++;
  ins_.push_back(Ins{op, d, a.id, b.id});
  return Val{d};
}

RowBuilder::Val RowBuilder::thresh(Val a) {
  for (const Ins& in : ins_)
    if (in.op == StepOp::Thresh) fail(ErrorCode::Internal, "RowBuilder: a row thresholds once");
  return emit(StepOp::Thresh, a, Val{kNone});
}

void RowBuilder::set(Val r, Val v) {
  if (r.id >= kNumPersistent) fail(ErrorCode::Internal, "RowBuilder: set() targets X or a slot");
  ins_.push_back(Ins{StepOp::Mov, r.id, v.id, kNone});
}

void RowBuilder::set_model_input(Val v) { in_ = v.id; }

void RowBuilder::set_noise(uint32_t key, int32_t slot) {
  has_noise_ = true;
  noise_key_ = key;
  noise_slot_ = slot;
}

StepRow RowBuilder::finish() const {
  if (reads_z_ && !has_noise_) fail(ErrorCode::Internal, "RowBuilder: the row reads Z without a noise draw");
  std::vector<Ins> ins = ins_;
  uint16_t in = in_;
  // Last use of every virtual value.
  auto last_uses = [&]() {
    std::map<uint16_t, int> last;
    for (int q = 0; q < int(ins.size()); ++q)
      for (uint16_t o : {ins[q].a, ins[q].b})
        if (is_virtual(o)) last[o] = q;
    if (is_virtual(in)) last[in] = int(ins.size());
    return last;
  };
  // Peephole: "t = op(...); R = mov t" with t dead afterwards -> "R = op(...)".
  {
    std::map<uint16_t, int> last = last_uses();
    std::vector<Ins> out;
    for (int q = 0; q < int(ins.size()); ++q) {
      const Ins& cur = ins[q];
      if (cur.op == StepOp::Mov && is_virtual(cur.a) && !out.empty() && out.back().dst == cur.a && last[cur.a] == q) {
        out.back().dst = cur.dst;
        continue;
      }
      out.push_back(cur);
    }
    // Re-map last-use indices after the removal happens implicitly: recompute below.
    ins = out;
  }
  std::map<uint16_t, int> last = last_uses();
  std::map<uint16_t, uint8_t> phys;
  bool free_reg[kNumRegs] = {};
  for (int r = kT0; r < kNumRegs; ++r) free_reg[r] = true;
  StepRow row;
  if (ins.size() > size_t(kMaxStepInstr))
    fail(ErrorCode::Internal, "RowBuilder: " + std::to_string(ins.size()) + " instructions exceed the row limit " +
                                  std::to_string(kMaxStepInstr));
  auto map_operand = [&](uint16_t o) -> uint8_t {
    if (o == kNone) return kNone;
    if (!is_virtual(o)) return uint8_t(o);
    auto it = phys.find(o);
    if (it == phys.end()) fail(ErrorCode::Internal, "RowBuilder: value used before it is defined");
    return it->second;
  };
  for (int q = 0; q < int(ins.size()); ++q) {
    const Ins& cur = ins[q];
    StepInstr& o = row.ins[q];
    o.op = cur.op;
    o.a = map_operand(cur.a);
    o.b = map_operand(cur.b);
    for (uint16_t src : {cur.a, cur.b})  // operands dying here free their register before dst is chosen
      if (is_virtual(src) && last[src] == q && phys.count(src)) free_reg[phys[src]] = true;
    if (is_virtual(cur.dst)) {
      int r = kT0;
      while (r < kNumRegs && !free_reg[r]) ++r;
      if (r == kNumRegs) fail(ErrorCode::Internal, "RowBuilder: out of temporary registers");
      free_reg[r] = false;
      phys[cur.dst] = uint8_t(r);
      o.dst = uint8_t(r);
      if (!last.count(cur.dst)) free_reg[r] = true;  // never read
    } else {
      o.dst = uint8_t(cur.dst);
    }
    if (cur.op == StepOp::Thresh) row.thresh_at = int8_t(q);
  }
  row.n_ins = uint8_t(ins.size());
  row.n_const = uint8_t(consts_.size());
  for (size_t i = 0; i < consts_.size(); ++i) row.k[i] = consts_[i];
  row.in_reg = in == kNone ? kNone : map_operand(in);
  row.noise = has_noise_ ? StepNoise::Step : StepNoise::None;
  row.noise_key = noise_key_;
  row.noise_slot = noise_slot_;
  // Masks.
  uint32_t written = 0, read = 0;
  for (int q = 0; q < row.n_ins; ++q) {
    const StepInstr& s = row.ins[q];
    for (uint8_t op : {s.a, s.b})
      if (op < kNumRegs && !(written & (1u << op))) read |= 1u << op;
    written |= 1u << s.dst;
  }
  if (row.in_reg != kNone && !(written & (1u << row.in_reg))) read |= 1u << row.in_reg;
  row.read_mask = read;
  row.write_mask = written;
  const std::string why = step_row_problem(row);
  if (!why.empty()) fail(ErrorCode::Internal, "RowBuilder: " + why);
  return row;
}

}  // namespace diffrt
