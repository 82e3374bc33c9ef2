#ifndef BUILDD_TESTS_TESTING_REFLECTION_CLIENT_H_
#define BUILDD_TESTS_TESTING_REFLECTION_CLIENT_H_

#include <memory>
#include <string>
#include <vector>

#include <grpcpp/security/credentials.h>

#include "absl/status/statusor.h"

namespace buildd::testing {

// A client that knows no service's proto: like `grpcurl` without proto
// files, it learns each service and message from the server's reflection
// service and calls methods with dynamic messages.
class ReflectionClient {
 public:
  // `credentials` null: plaintext.
  explicit ReflectionClient(std::string address,
                            std::shared_ptr<grpc::ChannelCredentials> credentials = nullptr)
      : address_(std::move(address)), credentials_(std::move(credentials)) {}

  // The services the server lists.
  absl::StatusOr<std::vector<std::string>> ListServices();

  // Calls a unary method ("grpc.health.v1.Health/Check") with a request in
  // protobuf text format; returns the response in text format.
  absl::StatusOr<std::string> Call(const std::string& method, const std::string& request_text,
                                   const std::string& bearer = "");

 private:
  std::shared_ptr<grpc::ChannelCredentials> Credentials() const;

  std::string address_;
  std::shared_ptr<grpc::ChannelCredentials> credentials_;
};

}  // namespace buildd::testing

#endif  // BUILDD_TESTS_TESTING_REFLECTION_CLIENT_H_
