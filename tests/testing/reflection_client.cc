#include "tests/testing/reflection_client.h"

#include <future>

#include <google/protobuf/descriptor.h>
#include <google/protobuf/descriptor.pb.h>
#include <google/protobuf/dynamic_message.h>
#include <google/protobuf/text_format.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include "absl/strings/str_cat.h"
#include "src/proto/grpc/reflection/v1alpha/reflection.grpc.pb.h"

namespace buildd::testing {

namespace refl = grpc::reflection::v1alpha;
namespace gp = google::protobuf;

namespace {

absl::Status Fail(const grpc::Status& s, const std::string& what) {
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                      absl::StrCat(what, ": ", s.error_message()));
}

// Adds every file the server sends for `symbol` (and its imports) to `pool`.
absl::Status LoadSymbol(refl::ServerReflection::Stub& stub, const std::string& symbol,
                        gp::DescriptorPool& pool) {
  grpc::ClientContext ctx;
  auto stream = stub.ServerReflectionInfo(&ctx);
  refl::ServerReflectionRequest req;
  req.set_file_containing_symbol(symbol);
  stream->Write(req);
  stream->WritesDone();
  refl::ServerReflectionResponse resp;
  std::vector<gp::FileDescriptorProto> files;
  while (stream->Read(&resp)) {
    if (resp.has_error_response()) {
      return absl::NotFoundError(absl::StrCat("reflection: ", resp.error_response().error_message()));
    }
    for (const std::string& bytes : resp.file_descriptor_response().file_descriptor_proto()) {
      gp::FileDescriptorProto file;
      file.ParseFromString(bytes);
      files.push_back(file);
    }
  }
  grpc::Status st = stream->Finish();
  if (!st.ok()) return Fail(st, "reflection");
  // Dependencies first: retry until every file builds.
  for (size_t round = 0; round < files.size() + 1; ++round) {
    bool progress = false;
    for (const auto& f : files) {
      if (pool.FindFileByName(f.name()) != nullptr) continue;
      bool ready = true;
      for (const std::string& dep : f.dependency()) ready = ready && pool.FindFileByName(dep) != nullptr;
      if (ready && pool.BuildFile(f) != nullptr) progress = true;
    }
    if (!progress) break;
  }
  return absl::OkStatus();
}

}  // namespace

std::shared_ptr<grpc::ChannelCredentials> ReflectionClient::Credentials() const {
  return credentials_ != nullptr ? credentials_ : grpc::InsecureChannelCredentials();
}

absl::StatusOr<std::vector<std::string>> ReflectionClient::ListServices() {
  auto channel = grpc::CreateChannel(address_, Credentials());
  auto stub = refl::ServerReflection::NewStub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  auto stream = stub->ServerReflectionInfo(&ctx);
  refl::ServerReflectionRequest req;
  req.set_list_services("*");
  stream->Write(req);
  stream->WritesDone();
  refl::ServerReflectionResponse resp;
  std::vector<std::string> out;
  while (stream->Read(&resp)) {
    for (const auto& s : resp.list_services_response().service()) out.push_back(s.name());
  }
  grpc::Status st = stream->Finish();
  if (!st.ok()) return Fail(st, "list services");
  return out;
}

absl::StatusOr<std::string> ReflectionClient::Call(const std::string& method,
                                                   const std::string& request_text,
                                                   const std::string& bearer) {
  const size_t slash = method.find('/');
  if (slash == std::string::npos) return absl::InvalidArgumentError("method is Service/Method");
  const std::string service_name = method.substr(0, slash);
  auto channel = grpc::CreateChannel(address_, Credentials());
  auto stub = refl::ServerReflection::NewStub(channel);
  gp::DescriptorPool pool;
  if (absl::Status st = LoadSymbol(*stub, service_name, pool); !st.ok()) return st;
  const gp::ServiceDescriptor* service = pool.FindServiceByName(service_name);
  if (service == nullptr) return absl::NotFoundError(absl::StrCat("no service ", service_name));
  const gp::MethodDescriptor* m = service->FindMethodByName(method.substr(slash + 1));
  if (m == nullptr) return absl::NotFoundError(absl::StrCat("no method ", method));

  gp::DynamicMessageFactory factory(&pool);
  std::unique_ptr<gp::Message> request(factory.GetPrototype(m->input_type())->New());
  if (!gp::TextFormat::ParseFromString(request_text, request.get())) {
    return absl::InvalidArgumentError("request does not parse");
  }
  std::string bytes = request->SerializeAsString();
  grpc::Slice slice(bytes);
  grpc::ByteBuffer request_buffer(&slice, 1);
  grpc::ByteBuffer response_buffer;
  grpc::GenericStub generic(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  if (!bearer.empty()) ctx.AddMetadata("authorization", "Bearer " + bearer);
  std::promise<grpc::Status> done;
  generic.UnaryCall(&ctx, absl::StrCat("/", service_name, "/", m->name()), grpc::StubOptions(),
                    &request_buffer, &response_buffer,
                    [&done](grpc::Status s) { done.set_value(std::move(s)); });
  grpc::Status st = done.get_future().get();
  if (!st.ok()) return Fail(st, method);
  std::vector<grpc::Slice> slices;
  response_buffer.Dump(&slices);
  std::string response_bytes;
  for (const auto& s : slices) response_bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  std::unique_ptr<gp::Message> response(factory.GetPrototype(m->output_type())->New());
  response->ParseFromString(response_bytes);
  std::string text;
  gp::TextFormat::PrintToString(*response, &text);
  return text;
}

}  // namespace buildd::testing
