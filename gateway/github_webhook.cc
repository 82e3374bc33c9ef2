#include "gateway/github_webhook.h"

#include <utility>

#include "gateway/http_errors.h"
#include "gateway/json_codec.h"

namespace buildd::gateway {

void AddGitHubWebhookRoute(Router& router, std::shared_ptr<BrokerClient> broker) {
  router.Post(
      "/webhooks/github",
      [broker](const HttpRequest& request, Reply reply) {
        pb::GitHubWebhookRequest delivery;
        // Cut to what GitHub sends; the signature check refuses the rest.
        delivery.set_event(request.Header("X-GitHub-Event").substr(0, 100));
        delivery.set_delivery(request.Header("X-GitHub-Delivery").substr(0, 100));
        delivery.set_signature(request.Header("X-Hub-Signature-256").substr(0, 200));
        delivery.set_body(request.body);
        broker->DeliverGitHubWebhook(
            CallMeta{"", request.request_id}, delivery,
            [reply = std::move(reply)](absl::StatusOr<pb::GitHubWebhookResponse> result) {
              if (!result.ok()) return reply(ErrorResponse(result.status()));
              reply(JsonResponse(200, ToJson(*result)));
            });
      },
      Auth::kNone);
}

}  // namespace buildd::gateway
