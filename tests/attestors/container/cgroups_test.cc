// Tests of /proc/<pid>/cgroup parsing and of the pod, Docker container and systemd unit
// found in every layout the runtimes and systemd produce.
#include "attestors/container/cgroups.h"

#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testutil/status_matchers.h"

namespace trellis::attestors::cgroups {
namespace {

using ::testing::HasSubstr;
using testutil::IsOk;
using testutil::StatusIs;

constexpr char kUid[] = "2ece296c-c5ec-11e7-858e-fa163e451acc";
constexpr char kUidUnderscores[] = "2ece296c_c5ec_11e7_858e_fa163e451acc";
constexpr char kId[] = "bc1eb339399eae78dd1115c765fda84b71ac6a954291b223820cfe775d8af778";
constexpr char kOtherId[] = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";

// A cgroup v1 file with the same path on every hierarchy, as the kubelet and Docker set it up.
std::string V1(const std::string& path) {
  return absl::StrCat("12:hugetlb:", path, "\n11:memory:", path, "\n10:cpu,cpuacct:", path,
                      "\n9:pids:", path, "\n1:name=systemd:", path, "\n0::/\n");
}
std::string V2(const std::string& path) { return absl::StrCat("0::", path, "\n"); }

std::vector<CgroupEntry> Parse(const std::string& text) {
  auto entries = ParseCgroups(text);
  EXPECT_THAT(entries, IsOk());
  return entries.ok() ? *entries : std::vector<CgroupEntry>{};
}

TEST(ParseCgroups, ReadsV1AndV2Lines) {
  auto entries = ParseCgroups("4:cpu,cpuacct:/a/b\n1:name=systemd:/init.scope\n0::/x:y\n");
  ASSERT_THAT(entries, IsOk());
  ASSERT_EQ(entries->size(), 3u);
  EXPECT_EQ((*entries)[0].hierarchy_id, 4);
  EXPECT_THAT((*entries)[0].controllers, ::testing::ElementsAre("cpu", "cpuacct"));
  EXPECT_EQ((*entries)[0].path, "/a/b");
  EXPECT_THAT((*entries)[1].controllers, ::testing::ElementsAre("name=systemd"));
  EXPECT_EQ((*entries)[2].hierarchy_id, 0);
  EXPECT_TRUE((*entries)[2].controllers.empty());
  EXPECT_EQ((*entries)[2].path, "/x:y");  // a colon in the path stays in the path
}

struct BadCase {
  const char* name;
  const char* text;
  const char* message;
};

TEST(ParseCgroups, RejectsMalformedLinesNamingThem) {
  const BadCase cases[] = {
      {"empty", "", "no lines"},
      {"only newlines", "\n\n", "no lines"},
      {"no separators", "garbage\n", "line 1"},
      {"one separator", "0:/a\n", "expected <id>:<controllers>:<path>"},
      {"id not a number", "x:memory:/a\n", "hierarchy id is not a number"},
      {"negative id", "-1:memory:/a\n", "hierarchy id is not a number"},
      {"relative path", "0::a/b\n", "path is not absolute"},
      {"empty controller", "3:cpu,:/a\n", "empty controller name"},
      {"v1 without controllers", "3::/a\n", "only the unified hierarchy"},
      {"second line bad", "0::/\nnonsense\n", "line 2"},
  };
  for (const BadCase& c : cases) {
    EXPECT_THAT(ParseCgroups(c.text),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.message)))
        << c.name;
  }
}

struct PodCase {
  const char* name;
  std::string text;
  std::optional<PodContainer> want;
};

TEST(FindPodContainer, FindsPodAndContainerInEveryLayout) {
  const std::string uid = kUid, us = kUidUnderscores, id = kId;
  const PodContainer found{uid, id};
  const std::string static_uid = "6e8c1b3bd4a34d8e9f0e1a2b3c4d5e6f";
  const PodCase cases[] = {
      {"v1 cgroupfs besteffort", V1("/kubepods/besteffort/pod" + uid + "/" + id), found},
      {"v1 cgroupfs burstable", V1("/kubepods/burstable/pod" + uid + "/" + id), found},
      {"v1 cgroupfs guaranteed", V1("/kubepods/pod" + uid + "/" + id), found},
      {"v1 systemd containerd",
       V1("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + us +
          ".slice/cri-containerd-" + id + ".scope"),
       found},
      {"v1 systemd guaranteed",
       V1("/kubepods.slice/kubepods-pod" + us + ".slice/cri-containerd-" + id + ".scope"), found},
      {"v2 systemd cri-o",
       V2("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + us +
          ".slice/crio-" + id + ".scope"),
       found},
      {"v2 systemd docker",
       V2("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + us +
          ".slice/docker-" + id + ".scope"),
       found},
      {"v2 cgroupfs containerd prefix",
       V2("/kubepods/besteffort/pod" + uid + "/cri-containerd-" + id), found},
      {"nested node with the kubelet.slice cgroup root",
       V2("/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/"
          "kubelet-kubepods-besteffort-pod" +
          us + ".slice/cri-containerd-" + id + ".scope"),
       found},
      {"nested cgroupfs with the kubelet cgroup root",
       V1("/kubelet/kubepods/besteffort/pod" + uid + "/" + id), found},
      {"sub-cgroup inside the container",
       V2("/kubepods/besteffort/pod" + uid + "/" + id + "/init.scope"), found},
      {"static pod uid", V1("/kubepods/burstable/pod" + static_uid + "/" + id),
       PodContainer{static_uid, id}},
      // Seen by an agent in a pod's own cgroup namespace.
      {"relative cgroupfs, same QoS class", V2("/../../pod" + uid + "/" + id), found},
      {"relative cgroupfs, other QoS class", V2("/../../../burstable/pod" + uid + "/" + id), found},
      {"relative systemd, same QoS class",
       V2("/../../kubepods-besteffort-pod" + us + ".slice/cri-containerd-" + id + ".scope"), found},
      {"relative systemd, other QoS class",
       V2("/../../../kubepods-burstable.slice/kubepods-burstable-pod" + us + ".slice/crio-" + id +
          ".scope"),
       found},
      {"relative from another pod's tree", V2("/../../../../kubepods/pod" + uid + "/" + id), found},
      // containerd's systemd-driver name taken literally as a cgroup (k3s and others).
      {"colon form below containerd.service",
       V2("/system.slice/containerd.service/kubepods-besteffort-pod" + us +
          ".slice:cri-containerd:" + id),
       found},
      {"colon form below k3s-agent.service",
       V1("/system.slice/k3s-agent.service/kubepods-burstable-pod" + us +
          ".slice:cri-containerd:" + id),
       found},
      {"colon form at the root", V2("/kubepods-pod" + us + ".slice:cri-containerd:" + id), found},
      {"colon form, relative", V2("/../../kubepods-besteffort-pod" + us + ".slice:crio:" + id),
       found},
      {"colon form below the kubepods slices",
       V2("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + us +
          ".slice:cri-containerd:" + id),
       found},
      {"pod-level cgroup", V1("/kubepods/besteffort/pod" + uid), std::nullopt},
      {"cri-o conmon",
       V2("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + us +
          ".slice/crio-conmon-" + id + ".scope"),
       std::nullopt},
      {"short container id", V1("/kubepods/besteffort/pod" + uid + "/bc1eb339399e"), std::nullopt},
      {"uppercase container id",
       V1("/kubepods/besteffort/pod" + uid + "/" +
          absl::StrReplaceAll(id, {{"b", "B"}, {"c", "C"}})),
       std::nullopt},
      {"unprefixed scope", V2("/kubepods.slice/kubepods-pod" + us + ".slice/" + id + ".scope"),
       std::nullopt},
      {"pod uid not hex", V1("/kubepods/besteffort/podxyz/" + id), std::nullopt},
      {"unknown QoS class", V1("/kubepods/premium/pod" + uid + "/" + id), std::nullopt},
      {"pod slice of another QoS class",
       V2("/kubepods.slice/kubepods-besteffort.slice/kubepods-burstable-pod" + us +
          ".slice/cri-containerd-" + id + ".scope"),
       std::nullopt},
      {"colon form with an unknown runtime", V2("/kubepods-pod" + us + ".slice:runc:" + id),
       std::nullopt},
      {"colon form below another service",
       V2("/system.slice/foo.service/kubepods-pod" + us + ".slice:cri-containerd:" + id),
       std::nullopt},
      {"docker outside kubernetes", V1("/docker/" + id), std::nullopt},
      {"user session", V2("/user.slice/user-1000.slice/session-2.scope"), std::nullopt},
      {"root", V2("/"), std::nullopt},
  };
  for (const PodCase& c : cases) {
    auto got = FindPodContainer(Parse(c.text));
    ASSERT_THAT(got, IsOk()) << c.name;
    EXPECT_EQ(*got, c.want) << c.name;
  }
}

// The built-in layouts start at the root of the hierarchy (or right after the ".." of the
// agent's cgroup namespace): a kubepods tree further down may be anybody's.
TEST(FindPodContainer, RefusesKubepodsLayoutsBelowAPrefix) {
  const std::string uid = kUid, us = kUidUnderscores, id = kId;
  const PodCase cases[] = {
      {"cgroupfs below a prefix", V2("/actions_job/kubepods/besteffort/pod" + uid + "/" + id),
       std::nullopt},
      {"nested cgroupfs below a prefix",
       V1("/docker/" + std::string(kOtherId) + "/kubepods/besteffort/pod" + uid + "/" + id),
       std::nullopt},
      {"nested node seen from the host",
       V2("/system.slice/docker-" + std::string(kOtherId) +
          ".scope/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/"
          "kubelet-kubepods-besteffort-pod" +
          us + ".slice/cri-containerd-" + id + ".scope"),
       std::nullopt},
      {"two kubelet roots", V1("/kubelet/kubelet/kubepods/pod" + uid + "/" + id), std::nullopt},
      {"pod without kubepods at the root", V2("/pod" + uid + "/" + id), std::nullopt},
      {"systemd pod slice at the root",
       V2("/kubepods-besteffort-pod" + us + ".slice/cri-containerd-" + id + ".scope"),
       std::nullopt},
      {"relative path into a user's tree",
       V2("/../../../../user.slice/user-1000.slice/user@1000.service/kubepods/pod" + uid + "/" +
          id),
       std::nullopt},
  };
  for (const PodCase& c : cases) {
    auto got = FindPodContainer(Parse(c.text));
    ASSERT_THAT(got, IsOk()) << c.name;
    EXPECT_EQ(*got, c.want) << c.name;
  }
}

// A user owns the cgroup subtree its systemd user manager was delegated and can build a
// victim's pod layout in it; that must not pass for the victim's container.
TEST(FindPodContainer, RefusesAPodLayoutBuiltInAUsersDelegatedSubtree) {
  const std::string uid = kUid, us = kUidUnderscores, id = kId;
  const std::string user = "/user.slice/user-1000.slice/user@1000.service";
  for (const std::string& text : {
           V2(user + "/kubepods/pod" + uid + "/" + id),
           V2(user + "/kubepods/besteffort/pod" + uid + "/" + id),
           V2(user + "/app.slice/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" +
              us + ".slice/cri-containerd-" + id + ".scope"),
           V2(user + "/kubepods.slice/kubepods-pod" + us + ".slice/cri-containerd-" + id +
              ".scope"),
           V2(user + "/kubelet/kubepods/pod" + uid + "/" + id),
           V2(user + "/kubepods-pod" + us + ".slice:cri-containerd:" + id),
       }) {
    auto got = FindPodContainer(Parse(text));
    ASSERT_THAT(got, IsOk()) << text;
    EXPECT_EQ(*got, std::nullopt) << text;
  }
  // cgroup v1: only systemd's named hierarchy is delegated, so only its line names the pod.
  const std::string v1 =
      absl::StrCat("12:memory:", user, "\n4:pids:", user, "\n1:name=systemd:", user,
                   "/kubepods/besteffort/pod", uid, "/", id, "\n0::", user, "\n");
  auto got = FindPodContainer(Parse(v1));
  ASSERT_THAT(got, IsOk());
  EXPECT_EQ(*got, std::nullopt);
}

TEST(FindPodContainer, RejectsLinesNamingTwoContainers) {
  std::string text = absl::StrCat("4:memory:/kubepods/besteffort/pod", kUid, "/", kId,
                                  "\n3:pids:/kubepods/besteffort/pod", kUid, "/", kOtherId, "\n");
  EXPECT_THAT(FindPodContainer(Parse(text)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("two containers")));
}

struct DockerCase {
  const char* name;
  std::string text;
  std::optional<std::string> want;
};

TEST(FindDockerContainerId, FindsDockerLayouts) {
  const std::string id = kId;
  const DockerCase cases[] = {
      {"v1 cgroupfs", V1("/docker/" + id), id},
      {"v2 systemd", V2("/system.slice/docker-" + id + ".scope"), id},
      {"v1 systemd", V1("/system.slice/docker-" + id + ".scope"), id},
      {"sub-cgroup of the container", V2("/system.slice/docker-" + id + ".scope/init.scope"), id},
      {"relative cgroupfs", V2("/../docker/" + id), id},
      {"relative systemd", V2("/../../system.slice/docker-" + id + ".scope"), id},
      {"short id", V1("/docker/bc1eb339399e"), std::nullopt},
      {"docker's own service", V2("/system.slice/docker.service"), std::nullopt},
      {"containerd in kubernetes", V1("/kubepods/besteffort/pod" + std::string(kUid) + "/" + id),
       std::nullopt},
      {"not in a container", V2("/user.slice/user-1000.slice/session-2.scope"), std::nullopt},
  };
  for (const DockerCase& c : cases) {
    auto got = FindDockerContainerId(Parse(c.text), nullptr);
    ASSERT_THAT(got, IsOk()) << c.name;
    EXPECT_EQ(*got, c.want) << c.name;
  }
}

TEST(FindDockerContainerId, RefusesDockerLayoutsBelowAPrefix) {
  const std::string id = kId;
  const std::string user = "/user.slice/user-1000.slice/user@1000.service";
  const DockerCase cases[] = {
      {"below a prefix", V2("/actions_job/docker/" + id), std::nullopt},
      {"kubernetes on docker",
       V2("/kubepods.slice/kubepods-pod" + std::string(kUidUnderscores) + ".slice/docker-" + id +
          ".scope"),
       std::nullopt},
      {"scope outside system.slice", V2("/docker-" + id + ".scope"), std::nullopt},
      {"user's delegated subtree, cgroupfs", V2(user + "/docker/" + id), std::nullopt},
      {"user's delegated subtree, systemd", V2(user + "/system.slice/docker-" + id + ".scope"),
       std::nullopt},
      {"user's delegated subtree, v1",
       absl::StrCat("4:pids:", user, "\n1:name=systemd:", user, "/docker/", id, "\n"),
       std::nullopt},
  };
  for (const DockerCase& c : cases) {
    auto got = FindDockerContainerId(Parse(c.text), nullptr);
    ASSERT_THAT(got, IsOk()) << c.name;
    EXPECT_EQ(*got, c.want) << c.name;
  }
}

TEST(FindDockerContainerId, RejectsLinesNamingTwoContainers) {
  std::string text = absl::StrCat("4:memory:/docker/", kId, "\n3:pids:/docker/", kOtherId, "\n");
  EXPECT_THAT(FindDockerContainerId(Parse(text), nullptr),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("two containers")));
}

TEST(ContainerIdMatcher, CustomPatternsReplaceTheDefaultLayouts) {
  auto matcher = ContainerIdMatcher::Create({"/my.slice/*/<id>/*", "/docker/<id>"});
  ASSERT_THAT(matcher, IsOk());
  EXPECT_EQ(matcher->Match("/my.slice/anything/abc123/leaf"), "abc123");
  EXPECT_EQ(matcher->Match("/docker/feed"), "feed");
  EXPECT_EQ(matcher->Match("/my.slice/anything/abc123"), std::nullopt);     // too short
  EXPECT_EQ(matcher->Match("/my.slice/a/abc123/leaf/more"), std::nullopt);  // too long
  EXPECT_EQ(matcher->Match("/other.slice/a/abc123/leaf"), std::nullopt);

  auto only_custom = ContainerIdMatcher::Create({"/custom/<id>"});
  ASSERT_THAT(only_custom, IsOk());
  auto got = FindDockerContainerId(Parse(V1(absl::StrCat("/docker/", kId))), &*only_custom);
  ASSERT_THAT(got, IsOk());
  EXPECT_EQ(*got, std::nullopt);
  got = FindDockerContainerId(Parse(V2("/custom/c0ffee")), &*only_custom);
  ASSERT_THAT(got, IsOk());
  EXPECT_EQ(*got, "c0ffee");
}

TEST(ContainerIdMatcher, EmptyListKeepsTheDefaultLayouts) {
  auto none = ContainerIdMatcher::Create({});
  ASSERT_THAT(none, IsOk());
  auto got = FindDockerContainerId(Parse(V1(absl::StrCat("/docker/", kId))), &*none);
  ASSERT_THAT(got, IsOk());
  EXPECT_EQ(*got, kId);
}

TEST(ContainerIdMatcher, RejectsInvalidAndAmbiguousPatterns) {
  const std::vector<std::vector<std::string>> bad = {
      {"docker/<id>"},
      {"/docker//<id>"},
      {"/docker/abc"},
      {"/<id>/<id>"},
      {"/docker/x<id>"},
      {"/a*/<id>"},
      {"/a/b/<id>", "/*/b/<id>"},
      {"/a/<id>", "/a/*"},
      {"/<id>", "/x"},
  };
  for (const auto& patterns : bad) {
    EXPECT_THAT(ContainerIdMatcher::Create(patterns), StatusIs(absl::StatusCode::kInvalidArgument))
        << patterns.front();
  }
  EXPECT_THAT(ContainerIdMatcher::Create({"/a/b/<id>", "/c/b/<id>", "/a/<id>"}), IsOk());
}

struct UnitCase {
  const char* name;
  std::string text;
  std::optional<std::string> want;
};

TEST(FindSystemdUnit, FindsTheUnitOnSystemdsHierarchy) {
  const UnitCase cases[] = {
      {"v2 service", V2("/system.slice/nginx.service"), "nginx.service"},
      {"v1 name=systemd", "5:memory:/system.slice\n1:name=systemd:/system.slice/sshd.service\n",
       "sshd.service"},
      {"hybrid prefers name=systemd",
       "1:name=systemd:/system.slice/a.service\n0::/system.slice/b.service\n", "a.service"},
      {"session scope", V2("/user.slice/user-1000.slice/session-3.scope"), "session-3.scope"},
      {"user manager", V2("/user.slice/user-1000.slice/user@1000.service/app.slice/x.service"),
       "user@1000.service"},
      {"delegated sub-cgroup cannot pose as another unit",
       V2("/system.slice/foo.service/payload/sshd.service"), "foo.service"},
      {"template instance", V2("/system.slice/system-getty.slice/getty@tty1.service"),
       "getty@tty1.service"},
      {"escaped name", V2("/system.slice/system-x2dy.slice/dev-disk-by\\x2dlabel.service"),
       "dev-disk-by\\x2dlabel.service"},
      {"docker scope", V2(absl::StrCat("/system.slice/docker-", kId, ".scope")),
       absl::StrCat("docker-", kId, ".scope")},
      {"slice only", V2("/system.slice"), std::nullopt},
      {"root", V2("/"), std::nullopt},
      {"v1 without systemd's hierarchy", "4:memory:/system.slice/nginx.service\n", std::nullopt},
  };
  for (const UnitCase& c : cases) {
    auto got = FindSystemdUnit(Parse(c.text));
    ASSERT_THAT(got, IsOk()) << c.name;
    EXPECT_EQ(*got, c.want) << c.name;
  }
}

TEST(FindSystemdUnit, RejectsUnitNamesWithInvalidCharacters) {
  EXPECT_THAT(FindSystemdUnit(Parse(V2("/system.slice/foo bar.service"))),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("invalid characters")));
}

}  // namespace
}  // namespace trellis::attestors::cgroups
