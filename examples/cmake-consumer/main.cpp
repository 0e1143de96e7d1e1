// Plans one layer's chunked prefill with the C API, the way an engine would,
// and prints the kernel launches of one chunk. Runs without a GPU (a dry-run
// context); with a GPU, create the context with compact_rt_create and pass
// device pointers and a stream instead.
#include <compact_rt.h>

#include <cstdint>
#include <cstdio>

int main() {
  compact_rt_context *ctx = nullptr;
  if (compact_rt_create_dry_run(&ctx) != COMPACT_RT_OK) {
    std::fprintf(stderr, "%s\n", compact_rt_last_error());
    return 1;
  }
  compact_rt_config config{16, 4, 128, 64, 128, COMPACT_RT_BF16, COMPACT_RT_NHD};
  compact_rt_plan_desc desc{config, 4, {0.06f, 2, 4}, 0.0f, /*max_batch=*/8,
                            /*block_capacity=*/1024};
  compact_rt_plan *plan = nullptr;
  if (compact_rt_plan_create(ctx, &desc, &plan) != COMPACT_RT_OK) {
    std::fprintf(stderr, "%s\n", compact_rt_last_error());
    return 1;
  }
  // Chunk 64 of a 128K prompt: B = 8, C = 1024.
  compact_rt_shape shape{8, 1024, 8 * 2048, 2048, 1024};
  auto fake = [](uintptr_t i) { return reinterpret_cast<void *>(uintptr_t(1) << 32 | i << 12); };
  compact_rt_status status = compact_rt_prefill_chunk(
      plan, &shape, 64 * 1024, fake(1), fake(2), fake(3), fake(4), fake(5),
      static_cast<int32_t *>(fake(6)), static_cast<int32_t *>(fake(7)), fake(8), fake(9),
      nullptr, nullptr);
  if (status != COMPACT_RT_OK) {
    std::fprintf(stderr, "%s\n", compact_rt_last_error());
    return 1;
  }
  std::printf("%s", compact_rt_dry_run_log(ctx));
  compact_rt_plan_destroy(plan);
  compact_rt_destroy(ctx);
  return 0;
}
