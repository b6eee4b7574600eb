// Process plumbing for the end-to-end benchmarks (see bench_deployment.h).
#include "bench/bench_deployment.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string_view>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

extern char** environ;

namespace trellis::bench {

void Die(const std::string& what) {
  std::fprintf(stderr, "bench: %s\n", what.c_str());
  std::exit(1);
}

std::string MakeTempDir(const std::string& prefix) {
  std::string templ = "/tmp/" + prefix + "XXXXXX";
  if (mkdtemp(templ.data()) == nullptr) Die("mkdtemp failed");
  chmod(templ.c_str(), 0755);
  return templ;
}

void RemoveTree(const std::string& path) {
  std::error_code ec;
  std::filesystem::remove_all(path, ec);
}

int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) Die("bind failed");
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

void WriteText(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << text;
  if (!f) Die("cannot write " + path);
}

namespace {

std::vector<char*> Argv(const std::vector<std::string>& argv) {
  std::vector<char*> out;
  for (const std::string& a : argv) out.push_back(const_cast<char*>(a.c_str()));
  out.push_back(nullptr);
  return out;
}

std::string ReadFileTail(const std::string& path, size_t max) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  std::string s = ss.str();
  return s.size() > max ? s.substr(s.size() - max) : s;
}

}  // namespace

CommandResult RunCommand(const std::vector<std::string>& argv, bool keep_stderr) {
  int pipefd[2];
  if (pipe2(pipefd, O_CLOEXEC) != 0) Die("pipe failed");
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, pipefd[1], 1);
  if (!keep_stderr) posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  pid_t pid;
  std::vector<char*> args = Argv(argv);
  int rc = posix_spawn(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  close(pipefd[1]);
  CommandResult result;
  if (rc != 0) {
    close(pipefd[0]);
    return result;
  }
  char buf[4096];
  ssize_t n;
  while ((n = read(pipefd[0], buf, sizeof(buf))) > 0) result.out.append(buf, n);
  close(pipefd[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  result.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

bool WaitFor(const std::function<bool()>& condition, absl::Duration timeout) {
  absl::Time deadline = absl::Now() + timeout;
  absl::Duration interval = absl::Milliseconds(20);
  while (true) {
    if (condition()) return true;
    if (absl::Now() >= deadline) return false;
    absl::SleepFor(interval);
    interval = std::min(interval * 2, absl::Milliseconds(500));
  }
}

Child::Child(std::vector<std::string> argv, std::string log_path) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND,
                                   0644);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  // Own process group: a terminal's Ctrl-C reaches the benchmark, which stops its children.
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
  posix_spawnattr_setpgroup(&attr, 0);
  std::vector<char*> args = Argv(argv);
  int rc = posix_spawn(&pid_, args[0], &actions, &attr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) Die("cannot start " + argv[0]);
}

Child::~Child() { Stop(); }

bool Child::Running() {
  if (reaped_) return false;
  pid_t r = waitpid(pid_, &status_, WNOHANG);
  if (r == pid_) reaped_ = true;
  return !reaped_;
}

int Child::Stop() {
  if (!reaped_ && Running()) {
    kill(pid_, SIGTERM);
    bool exited = WaitFor([&] { return !Running(); }, absl::Seconds(20));
    if (!exited) {
      kill(pid_, SIGKILL);
      waitpid(pid_, &status_, 0);
      reaped_ = true;
    }
  }
  return WIFEXITED(status_) ? WEXITSTATUS(status_) : -WTERMSIG(status_);
}

long ProcStatusValue(pid_t pid, const std::string& key) {
  std::ifstream f(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(f, line)) {
    if (line.size() > key.size() && line.compare(0, key.size(), key) == 0 &&
        line[key.size()] == ':') {
      return std::strtol(line.c_str() + key.size() + 1, nullptr, 10);
    }
  }
  return 0;
}

long RssKib(pid_t pid) { return ProcStatusValue(pid, "VmRSS"); }

SharedAwareMemory MemoryOf(pid_t pid) {
  std::ifstream f(absl::StrCat("/proc/", pid, "/smaps_rollup"));
  SharedAwareMemory m;
  std::string line;
  auto value = [&](const char* key) {
    return std::strtol(line.c_str() + std::string_view(key).size(), nullptr, 10);
  };
  while (std::getline(f, line)) {
    if (line.rfind("Rss:", 0) == 0) m.rss_kib = value("Rss:");
    if (line.rfind("Pss:", 0) == 0) m.pss_kib = value("Pss:");
    if (line.rfind("Private_Clean:", 0) == 0) m.uss_kib += value("Private_Clean:");
    if (line.rfind("Private_Dirty:", 0) == 0) m.uss_kib += value("Private_Dirty:");
  }
  return m;
}

double ProcessCpuSeconds(pid_t pid) {
  std::ifstream f(absl::StrCat("/proc/", pid, "/stat"));
  std::string stat((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
  size_t close_paren = stat.rfind(')');
  if (close_paren == std::string::npos) return 0;
  std::istringstream rest(stat.substr(close_paren + 2));
  std::string field;
  unsigned long long utime = 0, stime = 0;
  for (int i = 3; i <= 15 && rest >> field; ++i) {
    if (i == 14) utime = std::strtoull(field.c_str(), nullptr, 10);
    if (i == 15) stime = std::strtoull(field.c_str(), nullptr, 10);
  }
  return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

std::string ServerBinary() {
  const char* env = std::getenv("TRELLIS_SERVER_BIN");
  return env ? env : TRELLIS_SERVER_BIN;
}

std::string AgentBinary() {
  const char* env = std::getenv("TRELLIS_AGENT_BIN");
  return env ? env : TRELLIS_AGENT_BIN;
}

Deployment::Deployment(const std::string& name) : dir_(MakeTempDir("trellis-" + name + "-")) {
  admin_socket_ = dir_ + "/server/api.sock";
  agent_socket_ = dir_ + "/agent/api.sock";
  std::filesystem::create_directories(dir_ + "/server");
  std::filesystem::create_directories(dir_ + "/agent");
}

Deployment::~Deployment() {
  StopAgent();
  StopServer();
  if (!std::getenv("TRELLIS_BENCH_KEEP")) RemoveTree(dir_);
}

void Deployment::StartServer(const std::string& extra_server_config,
                             const std::string& extra_top_level, const std::string& log_level) {
  if (port_ == 0) port_ = FreePort();
  std::string conf = absl::StrCat(
      "server {\n  bind_address = \"127.0.0.1\"\n  bind_port = \"", port_, "\"\n  socket_path = \"",
      admin_socket_, "\"\n  trust_domain = \"example.org\"\n", "  data_dir = \"", dir_,
      "/server/data\"\n  log_level = \"", log_level, "\"\n",
      "  ratelimit {\n    attestation = false\n    signing = false\n  }\n", extra_server_config,
      "}\nplugins {\n  DataStore \"sql\" {\n    plugin_data {\n",
      "      database_type = \"sqlite3\"\n      connection_string = \"", dir_,
      "/server/data/datastore.sqlite3\"\n    }\n  }\n",
      "  KeyManager \"disk\" {\n    plugin_data {\n      keys_path = \"", dir_,
      "/server/data/keys.json\"\n    }\n  }\n",
      "  NodeAttestor \"join_token\" {\n    plugin_data {}\n  }\n}\n", extra_top_level);
  WriteText(dir_ + "/server.conf", conf);
  server_ = std::make_unique<Child>(
      std::vector<std::string>{ServerBinary(), "run", "-config", dir_ + "/server.conf"},
      dir_ + "/server.log");
  bool healthy = WaitFor(
      [&] {
        if (!server_->Running()) Die("trellis-server exited\n" + Logs());
        return RunCommand({ServerBinary(), "healthcheck", "-socketPath", admin_socket_}).status ==
               0;
      },
      absl::Seconds(60));
  if (!healthy) Die("trellis-server did not become healthy\n" + Logs());
}

void Deployment::StopServer() {
  if (server_) server_->Stop();
  server_.reset();
}

std::string Deployment::ServerCli(std::vector<std::string> args) {
  args.insert(args.begin(), ServerBinary());
  args.push_back("-socketPath");
  args.push_back(admin_socket_);
  CommandResult r = RunCommand(args, true);
  if (r.status != 0) Die("trellis-server " + args[1] + " failed: " + r.out);
  return r.out;
}

void Deployment::StartAgent() {
  std::string out = ServerCli({"token", "generate", "-ttl", "600"});
  size_t pos = out.find("Token:");
  if (pos == std::string::npos) Die("no token in: " + out);
  std::string token = out.substr(pos + 6);
  token.erase(0, token.find_first_not_of(" \t"));
  token = token.substr(0, token.find_first_of(" \t\r\n"));
  agent_id_ = "spiffe://example.org/spire/agent/join_token/" + token;
  bundle_pem_ = dir_ + "/bootstrap.pem";
  WriteText(bundle_pem_, ServerCli({"bundle", "show", "-format", "pem"}));
  std::string conf =
      absl::StrCat("agent {\n  trust_domain = \"example.org\"\n  server_address = \"127.0.0.1\"\n",
                   "  server_port = \"", port_, "\"\n  data_dir = \"", dir_, "/agent/data\"\n",
                   "  socket_path = \"", agent_socket_, "\"\n  trust_bundle_path = \"", bundle_pem_,
                   "\"\n  log_level = \"INFO\"\n}\nplugins {\n",
                   "  NodeAttestor \"join_token\" {\n    plugin_data {}\n  }\n",
                   "  KeyManager \"memory\" {\n    plugin_data {}\n  }\n",
                   "  WorkloadAttestor \"unix\" {\n    plugin_data {}\n  }\n}\n");
  WriteText(dir_ + "/agent.conf", conf);
  agent_ =
      std::make_unique<Child>(std::vector<std::string>{AgentBinary(), "run", "-config",
                                                       dir_ + "/agent.conf", "-joinToken", token},
                              dir_ + "/agent.log");
  bool healthy = WaitFor(
      [&] {
        if (!agent_->Running()) Die("trellis-agent exited\n" + Logs());
        return RunCommand({AgentBinary(), "healthcheck", "-socketPath", agent_socket_}).status == 0;
      },
      absl::Seconds(60));
  if (!healthy) Die("trellis-agent did not become healthy\n" + Logs());
}

void Deployment::StopAgent() {
  if (agent_) agent_->Stop();
  agent_.reset();
}

std::string Deployment::AgentLog() const {
  return ReadFileTail(dir_ + "/agent.log", std::string::npos);
}

std::string Deployment::Logs() const {
  return "--- server.log\n" + ReadFileTail(dir_ + "/server.log", 3000) + "\n--- agent.log\n" +
         ReadFileTail(dir_ + "/agent.log", 3000);
}

}  // namespace trellis::bench
