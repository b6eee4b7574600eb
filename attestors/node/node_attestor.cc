// Node attestor factories (implementation in progress).
#include "attestors/node/node_attestor.h"
#include "attestors/node/join_token.h"
#include "attestors/node/x509pop.h"
