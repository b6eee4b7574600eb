// URL helpers: https:// parsing for bundle fetchers, and percent-encoding for the platform APIs.
#include "common/https_url.h"

#include "gtest/gtest.h"

namespace trellis::common {
namespace {

TEST(PercentEncode, KeepsOnlyUnreservedCharacters) {
  EXPECT_EQ(PercentEncode("https://management.azure.com/"),
            "https%3A%2F%2Fmanagement.azure.com%2F");
  EXPECT_EQ(PercentEncode("a-b_c.d~e09AZ"), "a-b_c.d~e09AZ");
  EXPECT_EQ(PercentEncode("a b+c=d&e"), "a%20b%2Bc%3Dd%26e");
  EXPECT_EQ(PercentEncode(std::string("\x00\xff", 2)), "%00%FF");
  EXPECT_EQ(PercentEncode(""), "");
}

TEST(ParseHttpsUrl, SplitsHostPortAndPath) {
  absl::StatusOr<HttpsUrl> url = ParseHttpsUrl("https://bundle.example:8443/td", "endpoint");
  ASSERT_TRUE(url.ok()) << url.status();
  EXPECT_EQ(url->host, "bundle.example");
  EXPECT_EQ(url->PortNumber(), 8443);
  EXPECT_EQ(url->path, "/td");
  absl::StatusOr<HttpsUrl> plain = ParseHttpsUrl("http://bundle.example/", "endpoint");
  ASSERT_FALSE(plain.ok());
  EXPECT_NE(plain.status().message().find("endpoint"), std::string::npos) << plain.status();
}

}  // namespace
}  // namespace trellis::common
