#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "moat/cookie/key_schedule.h"

namespace moat::cookie {

absl::StatusOr<MasterSecret> LoadSecretFile(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return absl::InvalidArgumentError(absl::StrCat("--cookie_secret_file=", path,
                                                   ": cannot open: ", std::strerror(errno)));
  }
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    return absl::InvalidArgumentError(
        absl::StrCat("--cookie_secret_file=", path, ": not a regular file"));
  }
  if (st.st_mode & 077) {
    close(fd);
    return absl::PermissionDeniedError(absl::StrFormat(
        "--cookie_secret_file=%s: mode %04o lets group or others read the secret "
        "(anyone with it can mint cookies); run: chmod 600 %s",
        path, st.st_mode & 07777, path));
  }
  MasterSecret secret;
  size_t got = 0;
  while (got < kSecretBytes) {
    const ssize_t n = read(fd, secret.bytes + got, kSecretBytes - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += static_cast<size_t>(n);
  }
  close(fd);
  if (got < kSecretBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--cookie_secret_file=", path, ": holds ", got, " bytes, need at least ", kSecretBytes,
        "; make one with: head -c 32 /dev/urandom > ", path, " && chmod 600 ", path));
  }
  return secret;
}

MasterSecret RandomSecret() {
  MasterSecret s;
  size_t got = 0;
  while (got < kSecretBytes) {
    const ssize_t n = getrandom(s.bytes + got, kSecretBytes - got, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      // getrandom only fails this way on kernels older than 3.17.
      break;
    }
    got += static_cast<size_t>(n);
  }
  return s;
}

}  // namespace moat::cookie
