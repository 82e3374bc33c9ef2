#include "gateway/dashboard_api.h"

#include "gateway/http_errors.h"
#include "gateway/json_codec.h"

namespace buildd::gateway {
namespace {

CallMeta MetaOf(const HttpRequest& request) {
  return CallMeta{request.api_key, request.request_id};
}

template <typename T>
Callback<T> RespondJson(Reply reply) {
  return [reply = std::move(reply)](absl::StatusOr<T> result) {
    if (!result.ok()) return reply(ErrorResponse(result.status()));
    reply(JsonResponse(200, ToJson(*result)));
  };
}

// Parses the query into `message`; on failure replies 400 and returns false.
bool ParseQuery(const HttpRequest& request, google::protobuf::Message* message,
                const Reply& reply) {
  absl::Status status = QueryToMessage(request.query, message);
  if (status.ok()) return true;
  reply(ErrorResponse(status));
  return false;
}

}  // namespace

void AddDashboardRoutes(Router& router, std::shared_ptr<AccountsClient> accounts,
                        std::shared_ptr<BrokerClient> broker) {
  router.Get("/api/runners",
             RouteDoc("List the runners connected to the broker")
                 .Describe("The caller's account's runners; an admin's answer has every "
                           "account's, or those of `accountId`. Only the runners of the broker "
                           "replica that answers.")
                 .Tag("dashboard")
                 .Query<pb::ListRunnersRequest>()
                 .Returns<pb::ListRunnersResponse>()
                 .Errors({403}),
             [broker](const HttpRequest& request, Reply reply) {
               pb::ListRunnersRequest query;
               if (!ParseQuery(request, &query, reply)) return;
               broker->ListRunners(MetaOf(request), query,
                                   RespondJson<pb::ListRunnersResponse>(std::move(reply)));
             });
  router.Get("/api/queue",
             RouteDoc("The pending tasks the caller may see, by provider and label set")
                 .Describe("Each group has its depth and its oldest task; the group waiting "
                           "longest comes first.")
                 .Tag("dashboard")
                 .Query<pb::GetQueueRequest>()
                 .Returns<pb::GetQueueResponse>()
                 .Errors({403, 404}),
             [broker](const HttpRequest& request, Reply reply) {
               pb::GetQueueRequest query;
               if (!ParseQuery(request, &query, reply)) return;
               broker->GetQueue(MetaOf(request), query,
                                RespondJson<pb::GetQueueResponse>(std::move(reply)));
             });
  router.Get("/api/usage",
             RouteDoc("What accounts spent today (UTC) against their maxCostPerDay")
                 .Describe("An admin's answer has every account that spent anything today; "
                           "others get their own account's alone. `maxCostPerDay` is absent "
                           "where the broker does not hold the account's limit.")
                 .Tag("dashboard")
                 .Query<pb::ListUsageRequest>()
                 .Returns<pb::ListUsageResponse>()
                 .Errors({403}),
             [broker](const HttpRequest& request, Reply reply) {
               pb::ListUsageRequest query;
               if (!ParseQuery(request, &query, reply)) return;
               broker->ListUsage(MetaOf(request), query,
                                 RespondJson<pb::ListUsageResponse>(std::move(reply)));
             });
  router.Get("/api/accounts/:id/grants",
             RouteDoc("List an account's workspace grants (admin, or the account itself)")
                 .Returns<pb::ListGrantsResponse>()
                 .Errors({403, 404}),
             [accounts](const HttpRequest& request, Reply reply) {
               pb::ListGrantsRequest list;
               list.set_account_id(request.Param("id"));
               accounts->ListGrants(MetaOf(request), list,
                                    RespondJson<pb::ListGrantsResponse>(std::move(reply)));
             });
  router.Get("/api/workspaces/:id/grants",
             RouteDoc("List the grants on a workspace (admin)")
                 .Returns<pb::ListGrantsResponse>()
                 .Errors({403}),
             [accounts](const HttpRequest& request, Reply reply) {
               pb::ListGrantsRequest list;
               list.set_workspace_id(request.Param("id"));
               accounts->ListGrants(MetaOf(request), list,
                                    RespondJson<pb::ListGrantsResponse>(std::move(reply)));
             });
}

}  // namespace buildd::gateway
