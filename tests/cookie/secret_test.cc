#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "moat/cookie/key_schedule.h"

namespace moat::cookie {
namespace {

using ::testing::HasSubstr;

class SecretFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = ::testing::TempDir() + "moat_secret_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr) << std::strerror(errno);
    dir_ = tmpl;
  }
  void TearDown() override {
    for (const std::string& f : files_) unlink(f.c_str());
    rmdir(dir_.c_str());
  }

  // Writes n bytes 0, 1, 2, ... with the given mode; returns the path.
  std::string Write(const std::string& name, size_t n, mode_t mode) {
    const std::string path = dir_ + "/" + name;
    const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    EXPECT_GE(fd, 0);
    for (size_t i = 0; i < n; ++i) {
      const uint8_t b = static_cast<uint8_t>(i);
      EXPECT_EQ(write(fd, &b, 1), 1);
    }
    close(fd);
    EXPECT_EQ(chmod(path.c_str(), mode), 0);  // umask does not apply to chmod
    files_.push_back(path);
    return path;
  }

  std::string dir_;
  std::vector<std::string> files_;
};

TEST_F(SecretFileTest, LoadsTheFirst32Bytes) {
  const std::string path = Write("secret", 40, 0600);
  absl::StatusOr<MasterSecret> s = LoadSecretFile(path);
  ASSERT_TRUE(s.ok()) << s.status();
  for (size_t i = 0; i < kSecretBytes; ++i) EXPECT_EQ(s->bytes[i], i);
  // Owner-read-only is fine too.
  EXPECT_TRUE(LoadSecretFile(Write("ro", 32, 0400)).ok());
}

TEST_F(SecretFileTest, MissingFile) {
  const std::string path = dir_ + "/nope";
  absl::StatusOr<MasterSecret> s = LoadSecretFile(path);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(s.status().message(), HasSubstr(path));
  EXPECT_THAT(s.status().message(), HasSubstr("No such file"));
  EXPECT_THAT(s.status().message(), HasSubstr("head -c 32 /dev/urandom"));
}

TEST_F(SecretFileTest, TooShort) {
  const std::string path = Write("short", 31, 0600);
  absl::StatusOr<MasterSecret> s = LoadSecretFile(path);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.status().message(), HasSubstr(path));
  EXPECT_THAT(s.status().message(), HasSubstr("holds 31 bytes, need at least 32"));
  EXPECT_FALSE(LoadSecretFile(Write("empty", 0, 0600)).ok());
}

TEST_F(SecretFileTest, GroupOrOthersAccessIsRefused) {
  for (mode_t mode : {0640, 0604, 0644, 0660, 0602, 0610}) {
    const std::string path = Write("mode" + std::to_string(mode), 32, mode);
    absl::StatusOr<MasterSecret> s = LoadSecretFile(path);
    ASSERT_FALSE(s.ok()) << std::oct << mode;
    EXPECT_EQ(s.status().code(), absl::StatusCode::kPermissionDenied);
    EXPECT_THAT(s.status().message(), HasSubstr(path));
    EXPECT_THAT(s.status().message(), HasSubstr("chmod 600 " + path));
  }
}

TEST_F(SecretFileTest, UnreadableFile) {
  if (geteuid() == 0) GTEST_SKIP() << "root reads mode-0200 files";
  const std::string path = Write("unreadable", 32, 0200);
  absl::StatusOr<MasterSecret> s = LoadSecretFile(path);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(s.status().message(), HasSubstr(path));
}

TEST_F(SecretFileTest, DirectoryIsRefused) {
  absl::StatusOr<MasterSecret> s = LoadSecretFile(dir_);
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(s.status().message(), HasSubstr(dir_));
  EXPECT_THAT(s.status().message(), HasSubstr("not a regular file"));
}

TEST(RandomSecretTest, FreshAndNonZero) {
  const MasterSecret a = RandomSecret(), b = RandomSecret();
  EXPECT_NE(std::memcmp(a.bytes, b.bytes, kSecretBytes), 0);
  const MasterSecret zero{};
  EXPECT_NE(std::memcmp(a.bytes, zero.bytes, kSecretBytes), 0);
}

}  // namespace
}  // namespace moat::cookie
