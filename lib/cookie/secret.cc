#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "moat/cookie/key_schedule.h"

namespace moat::cookie {
namespace {

// Reads up to n bytes, retrying short reads and EINTR. Returns the count,
// or -1 with errno set.
ssize_t ReadFull(int fd, uint8_t* buf, size_t n) {
  size_t got = 0;
  while (got < n) {
    const ssize_t r = read(fd, buf + got, n - got);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return -1;
    if (r == 0) break;
    got += static_cast<size_t>(r);
  }
  return static_cast<ssize_t>(got);
}

std::string HowToMake(const std::string& path) {
  return absl::StrCat("make one with: head -c 32 /dev/urandom > ", path, " && chmod 600 ", path);
}

}  // namespace

absl::StatusOr<MasterSecret> LoadSecretFile(const std::string& path) {
  const std::string flag = absl::StrCat("--cookie_secret_file=", path);
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) {
    const int err = errno;
    const std::string msg = absl::StrCat(flag, ": cannot open: ", std::strerror(err));
    if (err == ENOENT) return absl::NotFoundError(absl::StrCat(msg, "; ", HowToMake(path)));
    if (err == EACCES) {
      return absl::PermissionDeniedError(
          absl::StrCat(msg, "; the file must be readable by the user moat runs as"));
    }
    return absl::InvalidArgumentError(msg);
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    const int err = errno;
    close(fd);
    return absl::InvalidArgumentError(absl::StrCat(flag, ": stat: ", std::strerror(err)));
  }
  if (!S_ISREG(st.st_mode)) {
    close(fd);
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": not a regular file; ", HowToMake(path)));
  }
  // Whoever can read the secret can mint cookies for every instance that
  // shares it, and whoever can write it can swap it: owner only, like ssh
  // refuses a group-readable private key.
  if ((st.st_mode & 077) != 0) {
    close(fd);
    return absl::PermissionDeniedError(absl::StrFormat(
        "%s: mode %04o lets group or others access the secret (anyone who reads it can "
        "mint valid cookies); run: chmod 600 %s",
        flag, st.st_mode & 07777, path));
  }
  MasterSecret secret;
  const ssize_t got = ReadFull(fd, secret.bytes, kSecretBytes);
  const int err = errno;
  close(fd);
  if (got < 0) {
    return absl::InvalidArgumentError(absl::StrCat(flag, ": read: ", std::strerror(err)));
  }
  if (static_cast<size_t>(got) < kSecretBytes) {
    return absl::InvalidArgumentError(absl::StrCat(flag, ": holds ", got, " bytes, need at least ",
                                                   kSecretBytes, " (raw bytes, not hex); ",
                                                   HowToMake(path)));
  }
  return secret;
}

MasterSecret RandomSecret() {
  MasterSecret s;
  size_t got = 0;
  while (got < kSecretBytes) {
    const ssize_t n = getrandom(s.bytes + got, kSecretBytes - got, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // ENOSYS (kernel < 3.17) or seccomp: try the device
    got += static_cast<size_t>(n);
  }
  if (got < kSecretBytes) {
    const int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
      const ssize_t n = ReadFull(fd, s.bytes + got, kSecretBytes - got);
      if (n > 0) got += static_cast<size_t>(n);
      close(fd);
    }
  }
  if (got < kSecretBytes) {
    // A guessable secret would let anyone mint cookies; refuse to run.
    std::fprintf(stderr,
                 "moat: no randomness for the cookie secret (getrandom and /dev/urandom "
                 "failed); pass --cookie_secret_file\n");
    std::abort();
  }
  return s;
}

}  // namespace moat::cookie
