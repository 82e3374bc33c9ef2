#include "services/accounts/api_keys.h"
#include "common/secret_box.h"

#include <set>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/testing/matchers.h"

namespace buildd::accounts {
namespace {

using ::buildd::testing::IsOk;
using ::buildd::testing::StatusIs;
using ::testing::StartsWith;

TEST(KeyHasherTest, NewKeysCarryTheAccountTypeAndAreUnique) {
  std::set<std::string> keys;
  for (int i = 0; i < 1000; ++i) {
    const std::string key = KeyHasher::NewKey("service");
    EXPECT_THAT(key, StartsWith("buildd_service_"));
    // 32 random bytes in unpadded base64: 43 characters, 256 bits.
    EXPECT_EQ(key.size(), std::string("buildd_service_").size() + 43);
    EXPECT_TRUE(LooksLikeKey(key));
    keys.insert(key);
  }
  EXPECT_EQ(keys.size(), 1000u);
}

TEST(KeyHasherTest, HashDependsOnThePepperAndIsNotTheKey) {
  const std::string key = KeyHasher::NewKey("user");
  KeyHasher a("pepper-aaaaaaaaaaaaaaaa");
  KeyHasher b("pepper-bbbbbbbbbbbbbbbb");
  EXPECT_EQ(a.Hash(key), a.Hash(key));
  EXPECT_NE(a.Hash(key), b.Hash(key));
  EXPECT_EQ(a.Hash(key).size(), 64u);
  EXPECT_EQ(a.Hash(key).find(key.substr(12)), std::string::npos);
}

TEST(KeyHasherTest, EqualComparesWholeHashes) {
  KeyHasher h("pepper-aaaaaaaaaaaaaaaa");
  const std::string x = h.Hash("buildd_user_aaaaaaaaaaaaaaaaaaaaaaaa");
  const std::string y = h.Hash("buildd_user_aaaaaaaaaaaaaaaaaaaaaaab");
  EXPECT_TRUE(KeyHasher::Equal(x, x));
  EXPECT_FALSE(KeyHasher::Equal(x, y));
  EXPECT_FALSE(KeyHasher::Equal(x, x.substr(0, 10)));
}

TEST(KeyHasherTest, RejectsStringsThatAreNotKeys) {
  EXPECT_FALSE(LooksLikeKey(""));
  EXPECT_FALSE(LooksLikeKey("Bearer x"));
  EXPECT_FALSE(LooksLikeKey("buildd__aaaaaaaaaaaaaaaaaaaa"));
  EXPECT_FALSE(LooksLikeKey("buildd_user_short"));
}

TEST(SecretBoxTest, SealsAndOpensUnderTheSameContext) {
  auto box = SecretBox::FromHex(std::string(64, 'a'));
  ASSERT_THAT(box, IsOk());
  const std::string sealed = box->Seal("sk-ant-secret", "account-1");
  EXPECT_EQ(sealed.find("sk-ant-secret"), std::string::npos);
  auto opened = box->Open(sealed, "account-1");
  ASSERT_THAT(opened, IsOk());
  EXPECT_EQ(*opened, "sk-ant-secret");
}

TEST(SecretBoxTest, RefusesAnotherContextOrKeyOrTampering) {
  auto box = SecretBox::FromHex(std::string(64, 'a'));
  auto other = SecretBox::FromHex(std::string(64, 'b'));
  ASSERT_THAT(box, IsOk());
  ASSERT_THAT(other, IsOk());
  std::string sealed = box->Seal("sk-ant-secret", "account-1");
  EXPECT_THAT(box->Open(sealed, "account-2"), StatusIs(absl::StatusCode::kDataLoss));
  EXPECT_THAT(other->Open(sealed, "account-1"), StatusIs(absl::StatusCode::kDataLoss));
  sealed[sealed.size() - 1] ^= 1;
  EXPECT_THAT(box->Open(sealed, "account-1"), StatusIs(absl::StatusCode::kDataLoss));
}

TEST(SecretBoxTest, TheKeyMustBe64HexDigits) {
  EXPECT_THAT(SecretBox::FromHex("abc"), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(SecretBox::FromHex(std::string(64, 'z')), StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace buildd::accounts
