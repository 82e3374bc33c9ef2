#include "gateway/github_webhook.h"

#include <utility>

#include "gateway/http_errors.h"
#include "gateway/json_codec.h"

namespace buildd::gateway {

void AddGitHubWebhookRoute(Router& router, std::shared_ptr<BrokerClient> broker) {
  router.Post(
      "/webhooks/github",
      RouteDoc("A GitHub webhook delivery (no key: its signature is checked)")
          .Describe("An issue labelled `buildd`, or a comment `/buildd <prompt>` by a member, "
                    "becomes a task on the repository's workspace; a review comment on a pull "
                    "request a task opened becomes a follow-up task that resumes it.")
          .Header({"X-Hub-Signature-256", "string", "sha256=HMAC of the raw body.", true})
          .Header({"X-GitHub-Event", "string", "issues, issue_comment, pull_request_review_comment."})
          .Header({"X-GitHub-Delivery", "string", "The delivery's id (a redelivery creates nothing)."})
          .Body(JsonFields({{"action", "string", "GitHub's payload, as GitHub sends it."}}))
          .Returns<pb::GitHubWebhookResponse>()
          .Errors({401, 404}),
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
