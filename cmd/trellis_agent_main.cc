// trellis-agent: the Trellis agent binary; all logic lives in cmd/cli and the libraries.
#include <iostream>
#include <string>
#include <vector>

#include "cmd/cli.h"

int main(int argc, char** argv) {
  return trellis::cmd::AgentMain(std::vector<std::string>(argv + 1, argv + argc), std::cout,
                                 std::cerr);
}
