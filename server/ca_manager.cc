// CaManager: X.509 CA and JWT key lifecycle (implementation in progress).
#include "server/ca_manager.h"
#include "server/entry_index.h"
#include "server/server_svid.h"
