// The process-wide system clock.
#include "common/clock.h"

namespace trellis::common {

const Clock& SystemClock::Get() {
  static const SystemClock clock;
  return clock;
}

}  // namespace trellis::common
