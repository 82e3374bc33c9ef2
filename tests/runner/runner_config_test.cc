#include "services/runner/runner_config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "services/runner/capabilities.h"
#include "services/runner/task_executor.h"

namespace buildd::runner {
namespace {

using ::testing::ElementsAre;

// "host:port, tls" of a --server value, or the error's message.
std::string Parsed(const std::string& value, bool tls_flags = false) {
  absl::StatusOr<ServerAddress> a = ParseServerAddress(value, tls_flags);
  if (!a.ok()) return std::string(a.status().message());
  return a->address + (a->tls ? " tls" : " plaintext");
}

TEST(RunnerConfigTest, ServerAddressKeepsHostAndPort) {
  EXPECT_EQ(Parsed("127.0.0.1:7002"), "127.0.0.1:7002 plaintext");
  EXPECT_EQ(Parsed("broker.example:443"), "broker.example:443 plaintext");
}

TEST(RunnerConfigTest, ServerAddressSchemeSaysWhetherTls) {
  EXPECT_EQ(Parsed("http://localhost:7002/"), "localhost:7002 plaintext");
  EXPECT_EQ(Parsed("https://broker:7002"), "broker:7002 tls");
  EXPECT_EQ(Parsed("grpcs://broker:7002"), "broker:7002 tls");
  EXPECT_EQ(Parsed("grpc://broker:7002//"), "broker:7002 plaintext");
  EXPECT_EQ(Parsed("  HTTP://broker:1 "), "broker:1 plaintext");
  EXPECT_EQ(Parsed("HTTPS://broker:1"), "broker:1 tls");
}

TEST(RunnerConfigTest, TlsFilesMakeABareAddressTlsAndContradictPlaintext) {
  EXPECT_EQ(Parsed("broker:7002", true), "broker:7002 tls");
  EXPECT_EQ(Parsed("https://broker:7002", true), "broker:7002 tls");
  EXPECT_THAT(Parsed("http://broker:7002", true), ::testing::HasSubstr("is plaintext, but TLS files"));
}

TEST(RunnerConfigTest, ServerAddressRefusesUnknownSchemesAndEmpty) {
  EXPECT_THAT(Parsed("ftp://broker:21"), ::testing::HasSubstr("unknown scheme"));
  EXPECT_THAT(Parsed("https://"), ::testing::HasSubstr("must not be empty"));
}

TEST(RunnerConfigTest, LabelsAreTrimmedWithoutEmptiesOrDuplicates) {
  EXPECT_THAT(SplitLabels(" gpu, linux,,gpu ,x86 "), ElementsAre("gpu", "linux", "x86"));
  EXPECT_TRUE(SplitLabels("").empty());
}

TEST(CapabilitiesTest, ParseVersionFindsTheVersionWord) {
  EXPECT_EQ(ParseVersion("git version 2.39.2\n"), "2.39.2");
  EXPECT_EQ(ParseVersion("v18.13.0\n"), "18.13.0");
  EXPECT_EQ(ParseVersion("Docker version 20.10.24+dfsg1, build 297e128"), "20.10.24+dfsg1");
  EXPECT_EQ(ParseVersion("1.0.17 (Claude Code)"), "1.0.17");
  EXPECT_EQ(ParseVersion("codex-cli 0.1.2504\nmore"), "0.1.2504");
  EXPECT_EQ(ParseVersion("weird tool\n"), "weird tool");
}

TEST(CapabilitiesTest, AlwaysReportsOsAndCommandProvider) {
  ProviderSettings providers;
  const std::vector<Capability> capabilities = DetectCapabilities("9.9.9", &providers);
  bool os = false, command = false;
  for (const Capability& capability : capabilities) {
    if (capability.name == "os") os = !capability.version.empty();
    if (capability.name == "command") command = capability.version == "9.9.9";
  }
  EXPECT_TRUE(os);
  EXPECT_TRUE(command);
}

TEST(CapabilitiesTest, FindOnPathFindsShAndNotNonsense) {
  EXPECT_FALSE(FindOnPath("sh").empty());
  EXPECT_TRUE(FindOnPath("no-such-tool-buildd-xyz").empty());
}

TEST(TaskExecutorPathTest, SafePathComponentCannotEscapeTheTasksDirectory) {
  EXPECT_EQ(SafePathComponent("task-1_a.b"), "task-1_a.b");
  EXPECT_EQ(SafePathComponent("../etc"), ".._etc");
  EXPECT_EQ(SafePathComponent("a/b"), "a_b");
  EXPECT_EQ(SafePathComponent(".."), "_");
  EXPECT_EQ(SafePathComponent(""), "_");
}

}  // namespace
}  // namespace buildd::runner
