// trellis-server: the Trellis server binary; all logic lives in cmd/cli and the libraries.
#include <iostream>
#include <string>
#include <vector>

#include "cmd/cli.h"

int main(int argc, char** argv) {
  return trellis::cmd::ServerMain(std::vector<std::string>(argv + 1, argv + argc), std::cout,
                                  std::cerr);
}
