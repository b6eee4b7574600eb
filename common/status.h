// Status helpers shared by every component: early-return macros over absl::Status.
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define TRELLIS_CONCAT_INNER_(a, b) a##b
#define TRELLIS_CONCAT_(a, b) TRELLIS_CONCAT_INNER_(a, b)

// Returns the status from the enclosing function when `expr` is not OK.
#define TRELLIS_RETURN_IF_ERROR(expr)        \
  do {                                       \
    ::absl::Status trellis_status_ = (expr); \
    if (!trellis_status_.ok()) return trellis_status_; \
  } while (0)

// `lhs = value of expr` when OK; otherwise returns its status from the enclosing function.
#define TRELLIS_ASSIGN_OR_RETURN(lhs, expr) \
  TRELLIS_ASSIGN_OR_RETURN_IMPL_(TRELLIS_CONCAT_(trellis_statusor_, __LINE__), lhs, expr)

#define TRELLIS_ASSIGN_OR_RETURN_IMPL_(var, lhs, expr) \
  auto var = (expr);                                  \
  if (!var.ok()) return std::move(var).status();      \
  lhs = std::move(var).value()

namespace trellis {

// Prefixes a status message with context, keeping the code.
absl::Status Annotate(const absl::Status& status, const std::string& context);

}  // namespace trellis
