// X509-SVID issuance throughput against the floor of one raw ECDSA P-256 sign plus one raw
// verify, measured in the same run in CPU time. Target: issuance >= 0.7 x floor.
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <time.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/csr.h"
#include "common/keys.h"
#include "common/openssl_util.h"
#include "common/x509.h"

namespace trellis::common {
namespace {

constexpr double kTarget = 0.7;
constexpr int kCsrPool = 64;
constexpr int kRounds = 3;

double CpuSeconds() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "x509_issuance_bench: %s\n", what.c_str());
  std::exit(1);
}

// Runs `op` until `budget` CPU seconds have passed (at least `min_iters` times); returns ops
// per CPU-second.
template <typename Op>
double Rate(double budget, int min_iters, Op op) {
  int n = 0;
  double start = CpuSeconds();
  double elapsed = 0;
  while (n < min_iters || elapsed < budget) {
    op();
    ++n;
    if ((n & 15) == 0 || n < min_iters) elapsed = CpuSeconds() - start;
  }
  return n / (CpuSeconds() - start);
}

int Main() {
  const Clock& clock = SystemClock::Get();
  auto ca_key = PrivateKey::Generate(KeyType::kEcP256);
  if (!ca_key.ok()) Die(ca_key.status().ToString());
  auto td = TrustDomain::Parse("example.org");
  auto ca = CreateRootCa(*ca_key, *td, absl::Hours(24), clock);
  if (!ca.ok()) Die(ca.status().ToString());
  auto issuer = X509SvidIssuer::Create(*ca, *ca_key, clock);
  if (!issuer.ok()) Die(issuer.status().ToString());
  auto id = SpiffeId::Parse("spiffe://example.org/ns/prod/sa/web");

  std::vector<std::string> csrs;
  for (int i = 0; i < kCsrPool; ++i) {
    auto key = PrivateKey::Generate(KeyType::kEcP256);
    auto csr = BuildCsr(*key, *id);
    if (!csr.ok()) Die(csr.status().ToString());
    csrs.push_back(*csr);
  }

  // Floor: raw ECDSA P-256 sign of a SHA-256 digest and raw verify of it, contexts reused.
  unsigned char digest[SHA256_DIGEST_LENGTH];
  std::string msg(400, 'x');
  SHA256(reinterpret_cast<const unsigned char*>(msg.data()), msg.size(), digest);
  EvpPkeyCtxPtr sign_ctx(EVP_PKEY_CTX_new(ca_key->pkey(), nullptr));
  EvpPkeyCtxPtr verify_ctx(EVP_PKEY_CTX_new(ca_key->public_key().pkey(), nullptr));
  if (EVP_PKEY_sign_init(sign_ctx.get()) != 1 || EVP_PKEY_verify_init(verify_ctx.get()) != 1) {
    Die("floor context setup failed");
  }
  auto floor_op = [&] {
    unsigned char sig[80];
    size_t len = sizeof(sig);
    if (EVP_PKEY_sign(sign_ctx.get(), sig, &len, digest, sizeof(digest)) != 1 ||
        EVP_PKEY_verify(verify_ctx.get(), sig, len, digest, sizeof(digest)) != 1) {
      Die("floor op failed");
    }
  };
  size_t next = 0;
  size_t total_bytes = 0;
  auto issue_op = [&] {
    auto leaf = (*issuer)->IssueFromCsr(csrs[next++ % csrs.size()], *id, absl::Hours(1));
    if (!leaf.ok()) Die(leaf.status().ToString());
    total_bytes += leaf->size();
  };
  auto openssl_op = [&] {
    auto leaf = IssueX509SvidWithOpenSsl(*ca, *ca_key, csrs[next++ % csrs.size()], *id,
                                         absl::Hours(1), clock);
    if (!leaf.ok()) Die(leaf.status().ToString());
  };

  // Sanity: the fast path's output parses and verifies.
  {
    auto leaf = (*issuer)->IssueFromCsr(csrs[0], *id, absl::Hours(1));
    auto cert = Certificate::FromDer(*leaf);
    if (!cert.ok()) Die("issued leaf does not parse: " + cert.status().ToString());
    auto verified = VerifyX509Svid({*cert}, {*ca}, *td, clock.Now());
    if (!verified.ok()) Die("issued leaf does not verify: " + verified.status().ToString());
  }

  // Warm up, then alternate rounds so drift affects both sides alike; report the median.
  Rate(0.05, 10, floor_op);
  Rate(0.05, 10, issue_op);
  std::vector<double> floors, issues, ratios;
  for (int r = 0; r < kRounds; ++r) {
    double f = Rate(0.4, 100, floor_op);
    double s = Rate(0.4, 100, issue_op);
    floors.push_back(f);
    issues.push_back(s);
    ratios.push_back(s / f);
  }
  double openssl_rate = Rate(0.4, 50, openssl_op);
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  double floor_rate = median(floors);
  double issue_rate = median(issues);
  double ratio = median(ratios);
  std::printf("floor (P-256 sign + verify):     %10.0f ops/CPU-s (%.1f us/op)\n", floor_rate,
              1e6 / floor_rate);
  std::printf("X509-SVID from CSR (fast path):  %10.0f SVIDs/CPU-s (%.1f us/op)\n", issue_rate,
              1e6 / issue_rate);
  std::printf("X509-SVID from CSR (OpenSSL API): %9.0f SVIDs/CPU-s (%.1f us/op, ratio %.2f)\n",
              openssl_rate, 1e6 / openssl_rate, openssl_rate / floor_rate);
  std::printf("ratio issuance/floor: %.3f (rounds:", ratio);
  for (double x : ratios) std::printf(" %.3f", x);
  std::printf(")  target %.2f  %s\n", kTarget, ratio >= kTarget ? "PASS" : "BELOW");
  return ratio >= kTarget ? 0 : 2;
}

}  // namespace
}  // namespace trellis::common

int main() { return trellis::common::Main(); }
