// Validates a rendered object the way an API server would refuse it,
// without one: kubernetes-models' JSON schemas (types, enums, required
// fields) by apiVersion and kind, and a strict check for unknown fields
// (the schemas let them through; a server drops or refuses them), from
// @kubernetes/client-node's model classes, recursive over nested types.
// Custom resources (KEDA, cert-manager, prometheus-operator) have their
// schemas from @kubernetes-models packages and their fields from the list
// in crd_fields.mjs.

import { importModule } from './lib.mjs';
import { CRD_FIELDS } from './crd_fields.mjs';

// Only this one file of client-node: its index pulls in the HTTP client,
// which needs a newer Node than Debian's.
const models = await importModule('@kubernetes/client-node/dist/gen/models/all.js');

// apiVersion → the package and directory its models are in.
function modelPath(apiVersion, kind) {
  const [group, version] = apiVersion.includes('/') ? apiVersion.split('/') : ['', apiVersion];
  const packages = {
    'keda.sh': '@kubernetes-models/keda',
    'cert-manager.io': '@kubernetes-models/cert-manager',
    'monitoring.coreos.com': '@kubernetes-models/prometheus-operator',
  };
  if (packages[group]) return `${packages[group]}/${group}/${version}/${kind}.js`;
  return `kubernetes-models/${group ? `${group}/` : ''}${version}/${kind}.js`;
}

const modelCache = new Map();
async function schemaModel(apiVersion, kind) {
  const path = modelPath(apiVersion, kind);
  if (!modelCache.has(path)) {
    modelCache.set(path, importModule(path).then((m) => m[kind]).catch(() => null));
  }
  return modelCache.get(path);
}

// "apps/v1" + "Deployment" → V1Deployment; "autoscaling/v2" → V2...
function clientNodeClass(apiVersion, kind) {
  const version = apiVersion.split('/').pop();
  return models[version[0].toUpperCase() + version.slice(1) + kind];
}

// Fields of `value` that type `type` (a client-node type name) lacks.
function unknownFields(value, type, path, out) {
  if (value === null || value === undefined) return;
  let m;
  if ((m = /^Array<(.+)>$/.exec(type))) {
    if (!Array.isArray(value)) return out.push(`${path}: not a list`);
    value.forEach((item, i) => unknownFields(item, m[1], `${path}[${i}]`, out));
    return;
  }
  if ((m = /^\{ \[key: string\]: (.+); \}$/.exec(type))) {
    if (typeof value !== 'object' || Array.isArray(value)) return out.push(`${path}: not a map`);
    for (const [k, v] of Object.entries(value)) unknownFields(v, m[1], `${path}.${k}`, out);
    return;
  }
  const cls = models[type];
  if (!cls || !cls.attributeTypeMap) return;  // string, number, IntOrString, any, ...
  if (typeof value !== 'object' || Array.isArray(value)) return out.push(`${path}: not an object`);
  const fields = new Map(cls.attributeTypeMap.map((a) => [a.baseName, a.type]));
  for (const [k, v] of Object.entries(value)) {
    if (!fields.has(k)) out.push(`${path}.${k}: unknown field of ${type}`);
    else unknownFields(v, fields.get(k), `${path}.${k}`, out);
  }
}

// The same over a hand-kept field list (crd_fields.mjs): true is any
// value, an object its fields, [x] a list of x, a string a client-node
// type, {'*': x} a map of x.
function unknownListedFields(value, fields, path, out) {
  if (value === null || value === undefined || fields === true) return;
  if (typeof fields === 'string') return unknownFields(value, fields, path, out);
  if (Array.isArray(fields)) {
    if (!Array.isArray(value)) return out.push(`${path}: not a list`);
    value.forEach((item, i) => unknownListedFields(item, fields[0], `${path}[${i}]`, out));
    return;
  }
  if (typeof value !== 'object' || Array.isArray(value)) return out.push(`${path}: not an object`);
  for (const [k, v] of Object.entries(value)) {
    const field = fields['*'] ?? fields[k];
    if (field === undefined) out.push(`${path}.${k}: not a known field`);
    else unknownListedFields(v, field, `${path}.${k}`, out);
  }
}

// What is wrong with one rendered object (empty: nothing).
export async function problems(object) {
  const id = `${object.kind}/${object.metadata?.name}`;
  const out = [];
  const Model = await schemaModel(object.apiVersion, object.kind);
  if (!Model) return [`${id}: no model for ${object.apiVersion} ${object.kind}`];
  try {
    new Model(object).validate();
  } catch (error) {
    out.push(`${id}: ${error.message}`);
  }
  const crd = CRD_FIELDS[`${object.apiVersion}/${object.kind}`];
  const cls = clientNodeClass(object.apiVersion, object.kind);
  const found = [];
  if (crd) unknownListedFields(object, crd, id, found);
  else if (cls) unknownFields(object, cls.name, id, found);
  else found.push(`${id}: no field list for ${object.apiVersion} ${object.kind}`);
  return out.concat(found);
}
