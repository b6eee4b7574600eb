// trellis-server admin commands against a real `trellis-server run` in a temp dir: output
// shapes, exit codes, one-line errors, and a clean stop on SIGTERM.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testutil/temp_dir.h"

namespace {

using ::testing::HasSubstr;
using ::testing::MatchesRegex;
using ::testing::Not;
using ::testing::StartsWith;

struct Result {
  int code;
  std::string out;
  std::string err;
};

std::string Slurp(const std::string& p) {
  std::ifstream f(p);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

pid_t Spawn(const std::vector<std::string>& args, const std::string& out_path,
            const std::string& err_path) {
  pid_t pid = fork();
  if (pid == 0) {
    FILE* out = freopen(out_path.c_str(), "w", stdout);
    FILE* err = freopen(err_path.c_str(), "w", stderr);
    if (out == nullptr || err == nullptr) _exit(127);
    std::vector<char*> argv;
    for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  return pid;
}

class ServerCliTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    tmp_ = std::make_unique<trellis::testutil::TempDir>("trellis-srvcli");
    dir_ = tmp_->path();
    socket_ = dir_ + "/sock/api.sock";
    std::ofstream(dir_ + "/server.conf")
        << "server {\n"
        << "  bind_address = \"127.0.0.1\"\n  bind_port = \"0\"\n"
        << "  socket_path = \"" << socket_ << "\"\n"
        << "  trust_domain = \"example.org\"\n"
        << "  data_dir = \"" << dir_ << "/data\"\n"
        << "}\n"
        << "plugins {\n"
        << "  DataStore \"sql\" { plugin_data { database_type = \"sqlite3\"\n"
        << "    connection_string = \"" << dir_ << "/data/ds.sqlite3\" } }\n"
        << "  KeyManager \"memory\" { plugin_data {} }\n"
        << "  NodeAttestor \"join_token\" { plugin_data {} }\n"
        << "}\n";
    server_pid_ = Spawn({TRELLIS_SERVER_BIN, "run", "-config", dir_ + "/server.conf"},
                        dir_ + "/server.out", dir_ + "/server.err");
    // Poll until the admin API answers (bounded); the server needs to create its CA first.
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (std::chrono::steady_clock::now() < deadline) {
      if (Run({"healthcheck", "-socketPath", socket_}).code == 0) return;
      int status = 0;
      if (waitpid(server_pid_, &status, WNOHANG) == server_pid_) {
        server_pid_ = -1;
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    FAIL() << "server did not become healthy: " << Slurp(dir_ + "/server.err");
  }

  static void TearDownTestSuite() {
    StopServer();
    tmp_.reset();
  }

  // Returns the server's exit status (-1 when it was not running).
  static int StopServer() {
    if (server_pid_ <= 0) return -1;
    kill(server_pid_, SIGTERM);
    int status = 0;
    waitpid(server_pid_, &status, 0);
    server_pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }

  static Result Run(const std::vector<std::string>& args) {
    static int n = 0;
    std::string out = dir_ + "/cmd" + std::to_string(++n) + ".out";
    std::string err = dir_ + "/cmd" + std::to_string(n) + ".err";
    std::vector<std::string> argv = {TRELLIS_SERVER_BIN};
    argv.insert(argv.end(), args.begin(), args.end());
    pid_t pid = Spawn(argv, out, err);
    int status = 0;
    waitpid(pid, &status, 0);
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, Slurp(out), Slurp(err)};
  }

  static Result Admin(std::vector<std::string> args) {
    args.push_back("-socketPath");
    args.push_back(socket_);
    return Run(args);
  }

  static std::string EntryIdFrom(const std::string& out) {
    std::smatch m;
    if (std::regex_search(out, m, std::regex("Entry ID         : (\\S+)"))) return m[1];
    return "";
  }

  static std::unique_ptr<trellis::testutil::TempDir> tmp_;
  static std::string dir_;
  static std::string socket_;
  static pid_t server_pid_;
};

std::unique_ptr<trellis::testutil::TempDir> ServerCliTest::tmp_;
std::string ServerCliTest::dir_;
std::string ServerCliTest::socket_;
pid_t ServerCliTest::server_pid_ = -1;

TEST_F(ServerCliTest, HealthcheckPrintsHealthy) {
  Result r = Admin({"healthcheck"});
  EXPECT_EQ(r.code, 0);
  EXPECT_EQ(r.out, "Server is healthy.\n");
  EXPECT_EQ(r.err, "");
}

TEST_F(ServerCliTest, ShallowHealthcheckPrintsHealthy) {
  Result r = Admin({"healthcheck", "-shallow"});
  EXPECT_EQ(r.code, 0);
  EXPECT_EQ(r.out, "Server is healthy.\n");
}

TEST_F(ServerCliTest, SocketIsGroupAccessibleOnly) {
  auto perms = std::filesystem::status(socket_).permissions();
  EXPECT_EQ(perms & std::filesystem::perms::all,
            std::filesystem::perms::owner_all | std::filesystem::perms::group_all);
}

TEST_F(ServerCliTest, TokenGeneratePrintsTheToken) {
  Result r = Admin({"token", "generate"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, MatchesRegex("Token: [0-9a-f]{32}\n"));
}

TEST_F(ServerCliTest, TokenGenerateWithSpiffeIdRegistersAnEntry) {
  Result r = Admin({"token", "generate", "-spiffeID", "spiffe://example.org/host", "-ttl", "60"});
  ASSERT_EQ(r.code, 0) << r.err;
  std::string token = r.out.substr(7, 32);
  Result show = Admin({"entry", "show", "-spiffeID", "spiffe://example.org/host"});
  EXPECT_THAT(show.out,
              HasSubstr("Parent ID        : spiffe://example.org/spire/agent/join_token/" + token));
}

TEST_F(ServerCliTest, EntryCreateShowCountDelete) {
  int before = std::atoi(Admin({"entry", "count"}).out.c_str());
  Result created =
      Admin({"entry", "create", "-parentID", "spiffe://example.org/spire/agent/join_token/abc",
             "-spiffeID", "spiffe://example.org/app", "-selector", "unix:uid:1000"});
  ASSERT_EQ(created.code, 0) << created.err;
  std::string id = EntryIdFrom(created.out);
  ASSERT_FALSE(id.empty()) << created.out;
  EXPECT_EQ(created.out, "Entry ID         : " + id +
                             "\nSPIFFE ID        : spiffe://example.org/app\n"
                             "Parent ID        : spiffe://example.org/spire/agent/join_token/abc\n"
                             "Revision         : 0\n"
                             "X509-SVID TTL    : default\n"
                             "JWT-SVID TTL     : default\n"
                             "Selector         : unix:uid:1000\n\n");

  Result shown = Admin({"entry", "show", "-entryID", id});
  EXPECT_EQ(shown.code, 0);
  EXPECT_THAT(shown.out, StartsWith("Found 1 entry\n"));
  EXPECT_THAT(shown.out, HasSubstr("SPIFFE ID        : spiffe://example.org/app\n"));

  Result count = Admin({"entry", "count"});
  EXPECT_EQ(count.out, std::to_string(before + 1) + " registration entries\n");

  Result deleted = Admin({"entry", "delete", "-entryID", id});
  EXPECT_EQ(deleted.code, 0) << deleted.err;
  EXPECT_EQ(deleted.out, "Deleted entry with ID: " + id + "\n");
  EXPECT_EQ(Admin({"entry", "count"}).out, std::to_string(before) + " registration entries\n");
}

TEST_F(ServerCliTest, BulkCreateThenDeleteFromFiles) {
  int before = std::atoi(Admin({"entry", "count"}).out.c_str());
  // 2,500 entries: three Admin API batches. One duplicates another, so it alone fails.
  std::string data = "{\"entries\": [";
  for (int i = 0; i < 2500; ++i) {
    data += (i ? "," : "") + std::string("{\"spiffe_id\": \"spiffe://example.org/bulk/") +
            std::to_string(i == 1234 ? 1233 : i) +
            "\", \"parent_id\": {\"trust_domain\": \"example.org\", \"path\": "
            "\"/spire/agent/join_token/bulk\"}, \"selectors\": [{\"type\": \"unix\", "
            "\"value\": \"uid:1\"}]}";
  }
  data += "]}";
  const std::string file = dir_ + "/bulk.json";
  {
    std::ofstream f(file);
    f << data;
  }
  Result created = Admin({"entry", "create", "-data", file});
  EXPECT_EQ(created.code, 1);
  EXPECT_THAT(created.err, HasSubstr("1 of 2500 entries failed"));
  EXPECT_THAT(created.out, HasSubstr("FAILED to create the following entry:"));
  EXPECT_THAT(created.out, HasSubstr("AlreadyExists"));
  EXPECT_EQ(Admin({"entry", "count"}).out,
            std::to_string(before + 2499) + " registration entries\n");

  std::string ids = "{\"ids\": [";
  const std::regex created_id(
      "Entry ID         : (\\S+)\nSPIFFE ID        : "
      "spiffe://example.org/bulk/");
  std::sregex_iterator it(created.out.begin(), created.out.end(), created_id);
  int n = 0;
  for (; it != std::sregex_iterator(); ++it) ids += (n++ ? ",\"" : "\"") + (*it)[1].str() + "\"";
  ids += "]}";
  EXPECT_EQ(n, 2499);
  {
    std::ofstream f(dir_ + "/ids.json");
    f << ids;
  }
  Result deleted = Admin({"entry", "delete", "-file", dir_ + "/ids.json"});
  EXPECT_EQ(deleted.code, 0) << deleted.err;
  EXPECT_EQ(Admin({"entry", "count"}).out, std::to_string(before) + " registration entries\n");
}

TEST_F(ServerCliTest, BulkCreateWithABadFileNamesTheEntryAndWritesNothing) {
  int before = std::atoi(Admin({"entry", "count"}).out.c_str());
  const std::string file = dir_ + "/bad.json";
  {
    std::ofstream f(file);
    f << R"({"entries": [{"spiffe_id": "spiffe://example.org/ok", "parent_id": "spiffe://example.org/p",
            "selectors": [{"type": "unix", "value": "uid:1"}]},
           {"spiffe_id": "spiffe://example.org/bad", "parent_id": "spiffe://example.org/p",
            "selectors": []}]})";
  }
  Result r = Admin({"entry", "create", "-data", file});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("entries[1]: at least one selector is required"));
  EXPECT_EQ(Admin({"entry", "count"}).out, std::to_string(before) + " registration entries\n");
  Result mixed = Admin({"entry", "create", "-data", file, "-spiffeID", "spiffe://example.org/x"});
  EXPECT_EQ(mixed.code, 1);
  EXPECT_THAT(mixed.err, HasSubstr("-data cannot be combined"));
}

TEST_F(ServerCliTest, EntryUpdateReplacesFieldsAndBumpsRevision) {
  Result created = Admin({"entry", "create", "-parentID", "spiffe://example.org/p", "-spiffeID",
                          "spiffe://example.org/upd", "-selector", "unix:uid:1"});
  ASSERT_EQ(created.code, 0) << created.err;
  std::string id = EntryIdFrom(created.out);
  Result updated =
      Admin({"entry", "update", "-entryID", id, "-parentID", "spiffe://example.org/p", "-spiffeID",
             "spiffe://example.org/upd", "-selector", "unix:uid:2", "-jwtSVIDTTL", "60"});
  ASSERT_EQ(updated.code, 0) << updated.err;
  EXPECT_THAT(updated.out, HasSubstr("Revision         : 1\n"));
  EXPECT_THAT(updated.out, HasSubstr("JWT-SVID TTL     : 60\n"));
  EXPECT_THAT(updated.out, HasSubstr("Selector         : unix:uid:2\n"));
}

TEST_F(ServerCliTest, EntryUpdateWithoutEntryIdFails) {
  Result r = Admin({"entry", "update", "-parentID", "spiffe://example.org/p", "-spiffeID",
                    "spiffe://example.org/upd", "-selector", "unix:uid:2"});
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.err, "Error: entry ID is required\n");
}

TEST_F(ServerCliTest, EntryCreateWithOptionalFieldsPrintsThem) {
  Result r = Admin({"entry", "create", "-node", "-spiffeID", "spiffe://example.org/nodes/web",
                    "-selector", "x509pop:subject:cn:web", "-x509SVIDTTL", "300", "-dns",
                    "web.example.org", "-admin", "-hint", "web"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("Parent ID        : spiffe://example.org/spire/server\n"));
  EXPECT_THAT(r.out, HasSubstr("X509-SVID TTL    : 300\n"));
  EXPECT_THAT(r.out, HasSubstr("DNS name         : web.example.org\n"));
  EXPECT_THAT(r.out, HasSubstr("Admin            : true\n"));
  EXPECT_THAT(r.out, HasSubstr("Hint             : web\n"));
}

TEST_F(ServerCliTest, EntryShowJsonIsOneJsonDocument) {
  ASSERT_EQ(Admin({"entry", "create", "-parentID", "spiffe://example.org/p", "-spiffeID",
                   "spiffe://example.org/json", "-selector", "unix:uid:7"})
                .code,
            0);
  Result r = Admin({"entry", "show", "-spiffeID", "spiffe://example.org/json", "-output", "json"});
  EXPECT_EQ(r.code, 0);
  EXPECT_THAT(r.out, StartsWith("{\"entries\":[{"));
  EXPECT_THAT(r.out, HasSubstr("\"spiffe_id\":\"spiffe://example.org/json\""));
}

TEST_F(ServerCliTest, EntryShowFiltersBySelector) {
  ASSERT_EQ(Admin({"entry", "create", "-parentID", "spiffe://example.org/p", "-spiffeID",
                   "spiffe://example.org/sel", "-selector", "unix:uid:4242"})
                .code,
            0);
  Result r = Admin({"entry", "show", "-selector", "unix:uid:4242"});
  EXPECT_THAT(r.out, StartsWith("Found 1 entry\n"));
  EXPECT_THAT(r.out, HasSubstr("spiffe://example.org/sel"));
}

TEST_F(ServerCliTest, DuplicateEntryFailsWithOneLine) {
  std::vector<std::string> args = {"entry",     "create",
                                   "-parentID", "spiffe://example.org/p",
                                   "-spiffeID", "spiffe://example.org/dup",
                                   "-selector", "unix:uid:1"};
  ASSERT_EQ(Admin(args).code, 0);
  Result r = Admin(args);
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, StartsWith("Error: failed to create entry: AlreadyExists"));
  EXPECT_EQ(r.err.find('\n'), r.err.size() - 1);
}

TEST_F(ServerCliTest, EntryCreateWithoutSelectorFails) {
  Result r = Admin({"entry", "create", "-parentID", "spiffe://example.org/p", "-spiffeID",
                    "spiffe://example.org/x"});
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(r.err, "Error: at least one selector is required\n");
  EXPECT_EQ(r.out, "");
}

TEST_F(ServerCliTest, EntryCreateOutsideTrustDomainNamesTheField) {
  Result r = Admin({"entry", "create", "-parentID", "spiffe://example.org/p", "-spiffeID",
                    "spiffe://other.org/x", "-selector", "unix:uid:1"});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, StartsWith("Error: failed to create entry: InvalidArgument: spiffe_id"));
}

TEST_F(ServerCliTest, MalformedSelectorFails) {
  Result r = Admin({"entry", "create", "-parentID", "spiffe://example.org/p", "-spiffeID",
                    "spiffe://example.org/x", "-selector", "unixuid"});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("type:value"));
}

TEST_F(ServerCliTest, UnknownFlagIsAUsageError) {
  Result r = Admin({"entry", "count", "-bogus"});
  EXPECT_EQ(r.code, 2);
  EXPECT_EQ(r.err, "Error: flag provided but not defined: -bogus\n");
}

TEST_F(ServerCliTest, DoubleDashFlagsWork) {
  Result r = Run({"entry", "count", "--socketPath", socket_});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("registration entries"));
}

TEST_F(ServerCliTest, UnknownEntrySubcommandFails) {
  Result r = Admin({"entry", "frob"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("unknown entry command \"frob\""));
}

TEST_F(ServerCliTest, DeleteUnknownEntryFails) {
  Result r = Admin({"entry", "delete", "-entryID", "00000000-0000-0000-0000-000000000000"});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, StartsWith("Error: failed to delete entry: NotFound"));
}

TEST_F(ServerCliTest, AgentCountAndListWhenNoneAttested) {
  EXPECT_EQ(Admin({"agent", "count"}).out, "0 attested agents\n");
  EXPECT_EQ(Admin({"agent", "list"}).out, "No attested agents found\n");
}

TEST_F(ServerCliTest, BanUnknownAgentFails) {
  Result r = Admin({"agent", "ban", "-spiffeID", "spiffe://example.org/spire/agent/join_token/x"});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, StartsWith("Error: NotFound"));
}

TEST_F(ServerCliTest, BundleShowPrintsPem) {
  Result r = Admin({"bundle", "show"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, StartsWith("-----BEGIN CERTIFICATE-----\n"));
}

TEST_F(ServerCliTest, BundleShowSpiffeFormatIsJson) {
  Result r = Admin({"bundle", "show", "-format", "spiffe"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("\"keys\""));
  EXPECT_THAT(r.out, HasSubstr("spiffe_sequence"));
}

TEST_F(ServerCliTest, BundleSetListDeleteFederated) {
  // Our own bundle, re-published under another trust domain, is a valid federated bundle.
  std::string pem = Admin({"bundle", "show"}).out;
  std::string path = dir_ + "/other.pem";
  std::ofstream(path) << pem;
  Result set = Admin({"bundle", "set", "-id", "spiffe://other.org", "-path", path});
  EXPECT_EQ(set.code, 0) << set.err;
  EXPECT_EQ(set.out, "bundle set.\n");
  Result list = Admin({"bundle", "list"});
  EXPECT_THAT(list.out, HasSubstr("* spiffe://other.org\n"));
  Result one = Admin({"bundle", "list", "-id", "other.org"});
  EXPECT_EQ(one.out, pem);
  Result del = Admin({"bundle", "delete", "-id", "spiffe://other.org"});
  EXPECT_EQ(del.out, "bundle deleted.\n");
  EXPECT_EQ(Admin({"bundle", "list"}).out, "");
}

TEST_F(ServerCliTest, FederationCreateShowUpdateListDelete) {
  std::string pem = Admin({"bundle", "show"}).out;
  std::string bundle_path = dir_ + "/partner.pem";
  std::ofstream(bundle_path) << pem;
  Result created = Admin(
      {"federation", "create", "-trustDomain", "partner.test", "-bundleEndpointURL",
       "https://127.0.0.1:1/partner", "-bundleEndpointProfile", "https_spiffe", "-endpointSpiffeID",
       "spiffe://partner.test/spire/server", "-trustDomainBundlePath", bundle_path});
  ASSERT_EQ(created.code, 0) << created.err;
  EXPECT_EQ(created.out,
            "Trust domain              : partner.test\n"
            "Bundle endpoint URL       : https://127.0.0.1:1/partner\n"
            "Bundle endpoint profile   : https_spiffe\n"
            "Endpoint SPIFFE ID        : spiffe://partner.test/spire/server\n\n");
  // The bootstrap bundle is stored as the trust domain's federated bundle.
  EXPECT_EQ(Admin({"bundle", "list", "-id", "partner.test"}).out, pem);
  Result show = Admin({"federation", "show", "-trustDomain", "partner.test", "-output", "json"});
  ASSERT_EQ(show.code, 0) << show.err;
  EXPECT_THAT(show.out, HasSubstr("\"bundle_endpoint_profile\":\"HTTPS_SPIFFE\""));
  Result updated =
      Admin({"federation", "update", "-trustDomain", "partner.test", "-bundleEndpointURL",
             "https://127.0.0.1:1/bundles", "-bundleEndpointProfile", "https_web"});
  ASSERT_EQ(updated.code, 0) << updated.err;
  EXPECT_THAT(updated.out, HasSubstr("Bundle endpoint profile   : https_web\n"));
  EXPECT_THAT(updated.out, Not(HasSubstr("Endpoint SPIFFE ID")));
  Result list = Admin({"federation", "list"});
  EXPECT_THAT(list.out, HasSubstr("Found 1 federation relationship\n\n"));
  EXPECT_THAT(list.out, HasSubstr("https://127.0.0.1:1/bundles"));
  Result del = Admin({"federation", "delete", "-id", "partner.test"});
  EXPECT_EQ(del.out, "federation relationship deleted.\n");
  EXPECT_THAT(Admin({"federation", "list"}).out, HasSubstr("Found 0 federation relationships"));
  EXPECT_EQ(Admin({"bundle", "delete", "-id", "partner.test"}).code, 0);
}

TEST_F(ServerCliTest, FederationCreateFromDataCreatesEach) {
  std::string path = dir_ + "/relationships.json";
  std::ofstream(path) << R"({"federation_relationships": [
    {"trust_domain": "one.test", "bundle_endpoint_url": "https://127.0.0.1:1/one", "https_web": {}},
    {"trust_domain": "two.test", "bundle_endpoint_url": "https://127.0.0.1:1/two",
     "https_spiffe": {"endpoint_spiffe_id": "spiffe://two.test/spire/server"}}
  ]})";
  Result created = Admin({"federation", "create", "-data", path});
  ASSERT_EQ(created.code, 0) << created.err;
  EXPECT_THAT(created.out, HasSubstr("Trust domain              : one.test\n"));
  EXPECT_THAT(created.out, HasSubstr("Trust domain              : two.test\n"));
  EXPECT_THAT(Admin({"federation", "list"}).out, HasSubstr("Found 2 federation relationships"));
  EXPECT_EQ(Admin({"federation", "delete", "-id", "one.test"}).code, 0);
  EXPECT_EQ(Admin({"federation", "delete", "-id", "two.test"}).code, 0);
}

TEST_F(ServerCliTest, FederationRefusesBadInputWithOneLine) {
  Result own = Admin({"federation", "create", "-trustDomain", "example.org", "-bundleEndpointURL",
                      "https://127.0.0.1:1/", "-bundleEndpointProfile", "https_web"});
  EXPECT_EQ(own.code, 1);
  EXPECT_THAT(own.err, HasSubstr("cannot federate with its own trust domain"));
  Result http = Admin({"federation", "create", "-trustDomain", "x.test", "-bundleEndpointURL",
                       "http://127.0.0.1:1/", "-bundleEndpointProfile", "https_web"});
  EXPECT_EQ(http.code, 1);
  EXPECT_THAT(http.err, HasSubstr("must be an https:// URL"));
  Result no_id = Admin({"federation", "create", "-trustDomain", "x.test", "-bundleEndpointURL",
                        "https://127.0.0.1:1/"});
  EXPECT_THAT(no_id.err, HasSubstr("endpoint SPIFFE ID is required if profile is https_spiffe"));
  std::string path = dir_ + "/bad-relationships.json";
  std::ofstream(path) << R"({"federation_relationships": [{"trust_domain": "x.test",
    "bundle_endpoint_url": "https://127.0.0.1:1/", "https_web": {}, "https_spiffe": {}}]})";
  Result both = Admin({"federation", "create", "-data", path});
  EXPECT_THAT(both.err, HasSubstr("federation_relationships[0]"));
  Result missing = Admin({"federation", "refresh", "-id", "nobody.test"});
  EXPECT_EQ(missing.code, 1);
  EXPECT_THAT(missing.err, HasSubstr("nobody.test"));
  EXPECT_THAT(Admin({"federation", "list"}).out, HasSubstr("Found 0 federation relationships"));
}

TEST_F(ServerCliTest, FederationRefreshOfAnUnreachableEndpointSaysWhy) {
  ASSERT_EQ(Admin({"federation", "create", "-trustDomain", "gone.test", "-bundleEndpointURL",
                   "https://127.0.0.1:1/", "-bundleEndpointProfile", "https_web"})
                .code,
            0);
  Result refresh = Admin({"federation", "refresh", "-id", "gone.test"});
  EXPECT_EQ(refresh.code, 1);
  EXPECT_THAT(refresh.err, HasSubstr("cannot fetch the bundle of gone.test from "
                                     "https://127.0.0.1:1/: cannot connect"));
  EXPECT_THAT(refresh.err, Not(HasSubstr("cannot reach the server")))
      << "the endpoint is unreachable, not this server";
  Result show = Admin({"federation", "show", "-trustDomain", "gone.test"});
  EXPECT_THAT(show.out, HasSubstr("Last refresh error        : cannot fetch the bundle"));
  EXPECT_EQ(Admin({"federation", "delete", "-id", "gone.test"}).code, 0);
}

TEST_F(ServerCliTest, HealthcheckWithoutServerFails) {
  Result r = Run({"healthcheck", "-socketPath", dir_ + "/nothing.sock"});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, StartsWith("Error: server is unhealthy"));
  EXPECT_EQ(r.err.find('\n'), r.err.size() - 1);
}

TEST_F(ServerCliTest, LoggerGetPrintsTheCurrentAndTheLaunchLevel) {
  Result r = Admin({"logger", "get"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "Logger Level : info\nLaunch Level : info\n");
  Result json = Admin({"logger", "get", "-output", "json"});
  ASSERT_EQ(json.code, 0) << json.err;
  EXPECT_EQ(json.out, "{\"current_level\":\"INFO\",\"launch_level\":\"INFO\"}\n");
}

TEST_F(ServerCliTest, LoggerSetChangesTheLevelAndResetRestoresIt) {
  Result set = Admin({"logger", "set", "-level", "debug"});
  ASSERT_EQ(set.code, 0) << set.err;
  EXPECT_EQ(set.out, "Logger Level : debug\nLaunch Level : info\n");
  EXPECT_EQ(Admin({"logger", "get"}).out, "Logger Level : debug\nLaunch Level : info\n");
  // A debug line of the server's, written only while the level is debug.
  ASSERT_EQ(Admin({"entry", "show"}).code, 0);
  Result reset = Admin({"logger", "reset"});
  ASSERT_EQ(reset.code, 0) << reset.err;
  EXPECT_EQ(reset.out, "Logger Level : info\nLaunch Level : info\n");
  std::string log = Slurp(dir_ + "/server.err");
  EXPECT_THAT(log,
              HasSubstr("Log level set previous_level=INFO new_level=DEBUG caller_uid=" +
                        std::to_string(getuid()) + " method=/trellis.server.v1.Admin/SetLogLevel"));
  EXPECT_THAT(log, HasSubstr("debug Entries listed"));
  EXPECT_THAT(log, HasSubstr("Log level reset to the launch level previous_level=DEBUG "
                             "new_level=INFO"));
}

TEST_F(ServerCliTest, LoggerSetRefusesAnUnknownOrMissingLevel) {
  Result bad = Admin({"logger", "set", "-level", "trace"});
  EXPECT_EQ(bad.code, 1);
  EXPECT_EQ(bad.err,
            "Error: the value \"trace\" is not a valid log level (debug, info, warn, error)\n");
  Result missing = Admin({"logger", "set"});
  EXPECT_EQ(missing.code, 1);
  EXPECT_EQ(missing.err, "Error: -level is required\n");
  EXPECT_EQ(Admin({"logger", "get"}).out, "Logger Level : info\nLaunch Level : info\n");
}

// Defined last: gtest runs a suite's tests in definition order, and under ctest each test
// gets a server of its own, so stopping the shared server here never starves another test.
TEST_F(ServerCliTest, ZzSigtermStopsTheServerWithExitZero) {
  ASSERT_GT(server_pid_, 0);
  EXPECT_EQ(StopServer(), 0) << Slurp(dir_ + "/server.err");
  EXPECT_FALSE(std::filesystem::exists(socket_));
  EXPECT_THAT(Slurp(dir_ + "/server.err"), HasSubstr("Server stopped"));
}

}  // namespace
