// gRPC's own log lines written through the process log, so they share its format and level.
#pragma once

namespace trellis::transport {

// Installs the process log as gRPC's log function (process-wide; idempotent). gRPC still
// filters by GRPC_VERBOSITY (errors only by default) before a line reaches it. Lines known to
// be benign for SPIFFE mTLS go out at debug level, e.g. "No match found for server name",
// which gRPC logs as an error for every handshake whose client sent SNI: a server SVID names a
// SPIFFE ID, never a host, so no name ever matches, and peers are checked by SPIFFE ID.
void RouteGrpcLogs();

}  // namespace trellis::transport
