//===- Checks.h - checks of device-side metadata and tables -----*- C++ -*-===//
//
// Context lengths, page tables and block tables live in device memory:
// checking them needs a copy to the host and a stream synchronisation. That
// happens in compact_rt_check_metadata / compact_rt_check_tables and, with
// compact_rt_set_checks, before every call. The checks themselves are plain
// functions of host copies.
//
//===----------------------------------------------------------------------===//

#ifndef COMPACT_RUNTIME_CHECKS_H
#define COMPACT_RUNTIME_CHECKS_H

#include "compact_rt.h"

#include <string>
#include <vector>

namespace compact::rt {

/// Each returns an empty string when the data is valid, else what is wrong,
/// naming the argument, the index and the expected range.
std::string checkLens(const compact_rt_config &config, const compact_rt_shape &shape,
                      const std::vector<int32_t> &lens);
std::string checkPages(const compact_rt_config &config, const compact_rt_shape &shape,
                       const std::vector<int32_t> &lens, const std::vector<int32_t> &pages);
std::string checkTables(const compact_rt_config &config, const compact_rt_shape &shape,
                        int32_t execGroupSize, const std::vector<int32_t> &lens,
                        const std::vector<int32_t> &table, const std::vector<int32_t> &counts);

/// A group slack (compact_rt_choose_exec_groups, plan desc->group_slack) is
/// finite and >= 0; else what is wrong, naming the argument `name`.
std::string checkSlack(const char *name, float slack);

/// The device data a call reads, copied to the host (read in place in a dry
/// run, where the "device" pointers are host memory) and checked: the context
/// lengths always, the page table and the block tables when not null. Sets the
/// error, prefixed by `api`, on failure.
compact_rt_status checkDeviceData(compact_rt_context *ctx, const char *api,
                                  const compact_rt_config &config, const compact_rt_shape &shape,
                                  const int32_t *ctxLens, const int32_t *pageTable,
                                  int32_t execGroupSize, const int32_t *table,
                                  const int32_t *counts, void *stream);

} // namespace compact::rt

#endif // COMPACT_RUNTIME_CHECKS_H
