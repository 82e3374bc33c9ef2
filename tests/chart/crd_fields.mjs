// The fields of the custom resources the chart renders, kept by hand from
// their CRDs (KEDA 2.x keda.sh/v1alpha1, cert-manager 1.x cert-manager.io/v1,
// prometheus-operator monitoring.coreos.com/v1): their @kubernetes-models
// schemas check types and required fields but let unknown fields through.
// true: any value; an object: its fields; [x]: a list of x; a string: a
// client-node type; {'*': x}: a map of x. A field missing here fails the
// test: add it from the CRD when the chart starts to use it.

const meta = { apiVersion: true, kind: true, metadata: 'V1ObjectMeta' };
const strings = { '*': true };
const secretKey = { name: true, key: true };

export const CRD_FIELDS = {
  'keda.sh/v1alpha1/ScaledObject': {
    ...meta,
    spec: {
      scaleTargetRef: { apiVersion: true, kind: true, name: true, envSourceContainerName: true },
      pollingInterval: true,
      cooldownPeriod: true,
      initialCooldownPeriod: true,
      idleReplicaCount: true,
      minReplicaCount: true,
      maxReplicaCount: true,
      fallback: { failureThreshold: true, replicas: true, behavior: true },
      advanced: {
        restoreToOriginalReplicaCount: true,
        horizontalPodAutoscalerConfig: { name: true, behavior: 'V2HorizontalPodAutoscalerBehavior' },
        scalingModifiers: { formula: true, target: true, activationTarget: true, metricType: true },
      },
      triggers: [{
        type: true,
        name: true,
        metadata: strings,
        authenticationRef: { name: true, kind: true },
        metricType: true,
        useCachedMetrics: true,
      }],
    },
  },
  'keda.sh/v1alpha1/TriggerAuthentication': {
    ...meta,
    spec: {
      secretTargetRef: [{ parameter: true, name: true, key: true }],
      configMapTargetRef: [{ parameter: true, name: true, key: true }],
      env: [{ parameter: true, name: true, containerName: true }],
      podIdentity: { provider: true, identityId: true, identityTenantId: true,
                     identityAuthorityHost: true, roleArn: true, identityOwner: true },
      boundServiceAccountToken: [{ parameter: true, serviceAccountName: true }],
      hashiCorpVault: true,
      azureKeyVault: true,
      awsSecretManager: true,
      gcpSecretManager: true,
    },
  },
  'cert-manager.io/v1/Certificate': {
    ...meta,
    spec: {
      secretName: true,
      secretTemplate: { annotations: strings, labels: strings },
      commonName: true,
      dnsNames: [true],
      ipAddresses: [true],
      uris: [true],
      emailAddresses: [true],
      duration: true,
      renewBefore: true,
      renewBeforePercentage: true,
      usages: [true],
      isCA: true,
      subject: {
        organizations: [true], countries: [true], organizationalUnits: [true], localities: [true],
        provinces: [true], streetAddresses: [true], postalCodes: [true], serialNumber: true,
      },
      literalSubject: true,
      privateKey: { algorithm: true, encoding: true, size: true, rotationPolicy: true },
      issuerRef: { name: true, kind: true, group: true },
      keystores: true,
      additionalOutputFormats: [{ type: true }],
      encodeUsagesInRequest: true,
      revisionHistoryLimit: true,
      nameConstraints: true,
      otherNames: [{ oid: true, utf8Value: true }],
    },
  },
  'monitoring.coreos.com/v1/ServiceMonitor': {
    ...meta,
    spec: {
      jobLabel: true,
      targetLabels: [true],
      podTargetLabels: [true],
      selector: 'V1LabelSelector',
      selectorMechanism: true,
      namespaceSelector: { any: true, matchNames: [true] },
      endpoints: [{
        port: true,
        targetPort: true,
        path: true,
        scheme: true,
        params: { '*': [true] },
        interval: true,
        scrapeTimeout: true,
        honorLabels: true,
        honorTimestamps: true,
        trackTimestampsStaleness: true,
        relabelings: [true],
        metricRelabelings: [true],
        tlsConfig: true,
        authorization: { type: true, credentials: secretKey },
        basicAuth: { username: secretKey, password: secretKey },
        bearerTokenSecret: secretKey,
        oauth2: true,
        proxyUrl: true,
        followRedirects: true,
        enableHttp2: true,
        filterRunning: true,
      }],
      sampleLimit: true,
      targetLimit: true,
      labelLimit: true,
      labelNameLengthLimit: true,
      labelValueLengthLimit: true,
      keepDroppedTargets: true,
      attachMetadata: { node: true },
      scrapeClass: true,
      scrapeProtocols: [true],
      fallbackScrapeProtocol: true,
    },
  },
};
