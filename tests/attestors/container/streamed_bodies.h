// Response bodies the container attestors' fakes send piecemeal: oversized ones and ones that
// arrive a byte at a time, to test the attestors' size and time limits.
#pragma once

#include <httplib.h>

#include <algorithm>
#include <string>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace trellis::attestors::testing {

// `size` bytes of JSON whitespace in 64 KiB writes, with a Content-Length header when
// `declare_length`, else chunked. Stops as soon as the client hangs up.
inline void StreamFiller(httplib::Response& res, size_t size, bool declare_length) {
  auto provide = [size](size_t offset, httplib::DataSink& sink) {
    static const std::string kPiece(64 * 1024, ' ');
    if (offset >= size) {
      sink.done();
      return true;
    }
    size_t n = std::min(kPiece.size(), size - offset);
    return sink.write(kPiece.data(), n);
  };
  if (declare_length) {
    res.set_content_provider(size, "application/json",
                             [provide](size_t offset, size_t /*length*/, httplib::DataSink& sink) {
                               return provide(offset, sink);
                             });
  } else {
    res.set_chunked_content_provider("application/json", provide);
  }
}

// `body` with its Content-Length, one byte per write and a pause of `every` before each, as a
// peer that trickles its answer. Stops as soon as the client hangs up.
inline void StreamDrip(httplib::Response& res, std::string body, absl::Duration every) {
  const size_t size = body.size();
  res.set_content_provider(
      size, "application/json",
      [body = std::move(body), every](size_t offset, size_t /*length*/, httplib::DataSink& sink) {
        absl::SleepFor(every);
        return sink.write(body.data() + offset, 1);
      });
}

}  // namespace trellis::attestors::testing
