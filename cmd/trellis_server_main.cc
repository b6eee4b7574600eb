// trellis-server: the Trellis server binary; all logic lives in cmd/ libraries and components.
#include <iostream>
#include <string>
#include <vector>

#include "cmd/cli.h"
#include "cmd/server_cli.h"

int main(int argc, char** argv) {
  return trellis::cmd::ServerMain(std::vector<std::string>(argv + 1, argv + argc), std::cout,
                                  std::cerr, trellis::cmd::ServerCommands());
}
