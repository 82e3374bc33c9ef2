// What the chart tests share: where helm and the models are, rendering the
// chart with a values file, and finding things in what it rendered.
//
// The tools come from ./buildd test (scripts/test_tools.sh,
// ensure_test_chart_tools), which exports their paths; run by hand, the
// default places under .buildd/test-tools are used.

import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const CHART = join(ROOT, 'charts/buildd');
export const TESTS = join(ROOT, 'tests/chart');
export const NODE_MODULES =
  process.env.BUILDD_TEST_NODE_MODULES || join(ROOT, '.buildd/test-tools/node_modules');
export const HELM =
  process.env.BUILDD_TEST_HELM || join(NODE_MODULES, '../k8s/helm/helm');

if (!existsSync(HELM) || !existsSync(join(NODE_MODULES, 'kubernetes-models'))) {
  throw new Error(`helm (${HELM}) or the models (${NODE_MODULES}) are missing: ` +
                  'run ./buildd test, which installs them');
}

// An npm package's module by its path (ES modules do not search NODE_PATH).
export function importModule(path) {
  return import(pathToFileURL(join(NODE_MODULES, path)).href);
}

const yaml = await importModule('js-yaml/dist/js-yaml.mjs');
export const parseYaml = yaml.load;
export const parseYamlAll = yaml.loadAll;

// helm keeps its caches and settings out of $HOME, and sees no cluster
// unless a test gives it a kubeconfig.
const helmHome = mkdtempSync(join(tmpdir(), 'buildd-chart-helm-'));
process.on('exit', () => rmSync(helmHome, { recursive: true, force: true }));

export function helm(args, { kubeconfig } = {}) {
  const env = {
    PATH: process.env.PATH,
    HOME: helmHome,
    HELM_CACHE_HOME: join(helmHome, 'cache'),
    HELM_CONFIG_HOME: join(helmHome, 'config'),
    HELM_DATA_HOME: join(helmHome, 'data'),
    KUBECONFIG: kubeconfig || join(helmHome, 'no-cluster'),
  };
  return new Promise((resolvePromise) => {
    const started = process.hrtime.bigint();
    execFile(HELM, args, { env, maxBuffer: 64 << 20 }, (error, stdout, stderr) => {
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      resolvePromise({ code: error ? (error.code ?? 1) : 0, stdout, stderr, ms });
    });
  });
}

export const RELEASE = 'buildd';
export const NAMESPACE = 'agents';

// Renders the chart with tests/chart/<file> (and more helm arguments);
// fails on any error. Returns the objects and how long helm took.
export async function render(valuesFile, extra = [], options = {}) {
  const args = ['template', RELEASE, CHART, '--namespace', NAMESPACE];
  if (valuesFile) args.push('-f', join(TESTS, valuesFile));
  const result = await helm([...args, ...extra], options);
  if (result.code !== 0) {
    throw new Error(`helm template ${valuesFile} failed:\n${result.stderr}`);
  }
  const objects = parseYamlAll(result.stdout).filter((doc) => doc != null);
  return { objects, ms: result.ms, text: result.stdout };
}

export function find(objects, kind, name) {
  return objects.find((o) => o.kind === kind && o.metadata.name === name);
}

export function must(objects, kind, name) {
  const object = find(objects, kind, name);
  if (!object) {
    const have = objects.map((o) => `${o.kind}/${o.metadata.name}`).join(', ');
    throw new Error(`no ${kind} ${name} among ${have}`);
  }
  return object;
}

export function ofKind(objects, kind) {
  return objects.filter((o) => o.kind === kind);
}

export const name = (component) => `${RELEASE}-${component}`;

// The pod template of a Deployment or Job, or of the Jobs a KEDA ScaledJob
// starts.
export const podTemplate = (workload) =>
  (workload.kind === 'ScaledJob' ? workload.spec.jobTargetRef : workload.spec).template;
export const podSpec = (workload) => podTemplate(workload).spec;

export function containers(workload) {
  const spec = podSpec(workload);
  return [...(spec.initContainers || []), ...spec.containers];
}

export function container(workload, containerName) {
  const found = containers(workload).find((c) => c.name === containerName);
  if (!found) throw new Error(`${workload.metadata.name} has no container ${containerName}`);
  return found;
}

// --flag=value arguments as a map (a flag given twice keeps the last).
export function flags(c) {
  const out = new Map();
  for (const arg of c.args || []) {
    const m = /^--([a-z0-9_]+)(?:=(.*))?$/s.exec(arg);
    if (m) out.set(m[1], m[2] ?? '');
  }
  return out;
}

// Everything that makes pods.
export function workloads(objects) {
  return objects.filter((o) => ['Deployment', 'Job', 'StatefulSet', 'DaemonSet', 'ScaledJob'].includes(o.kind));
}

// Does a label selector (matchLabels only) select these labels?
export function selects(selector, labels) {
  const wanted = selector.matchLabels || selector;
  return Object.entries(wanted).every(([k, v]) => labels?.[k] === v);
}

export const decode = (b64) => Buffer.from(b64, 'base64').toString('utf8');

// The file a container sees at `path`, as (volume, item) of its pod: which
// Secret and key it is, when it is one.
export function fileSource(workload, c, path) {
  const spec = podSpec(workload);
  for (const mount of c.volumeMounts || []) {
    const prefix = mount.mountPath.replace(/\/$/, '') + '/';
    if (!path.startsWith(prefix)) continue;
    const file = path.slice(prefix.length);
    const volume = (spec.volumes || []).find((v) => v.name === mount.name);
    if (!volume) return null;
    const secrets = volume.projected
      ? volume.projected.sources.filter((s) => s.secret).map((s) => s.secret)
      : volume.secret ? [{ name: volume.secret.secretName, items: volume.secret.items }] : [];
    for (const secret of secrets) {
      if (!secret.items) return { secret: secret.name, key: file };
      const item = secret.items.find((i) => i.path === file);
      if (item) return { secret: secret.name, key: item.key };
    }
    if (volume.persistentVolumeClaim || volume.emptyDir) return { volume };
    return null;
  }
  return null;
}
