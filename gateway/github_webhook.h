#ifndef BUILDD_GATEWAY_GITHUB_WEBHOOK_H_
#define BUILDD_GATEWAY_GITHUB_WEBHOOK_H_

#include <memory>

#include "gateway/broker_client.h"
#include "gateway/router.h"

namespace buildd::gateway {

// POST /webhooks/github: GitHub's webhook deliveries, without an API key.
// The raw body and the X-GitHub-Event, X-GitHub-Delivery and
// X-Hub-Signature-256 headers go to BrokerService.DeliverGitHubWebhook as
// they came (the broker holds the secret and checks the signature: 401
// when it does not match); the answer is {"taskId", "outcome"}.
void AddGitHubWebhookRoute(Router& router, std::shared_ptr<BrokerClient> broker);

}  // namespace buildd::gateway

#endif  // BUILDD_GATEWAY_GITHUB_WEBHOOK_H_
