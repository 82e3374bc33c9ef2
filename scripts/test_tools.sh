# shellcheck shell=bash
# Tools that only the tests use, installed under $STATE_DIR/test-tools.

# The Claude Code CLI the runner's tests drive against a fake Messages API.
# Pinned: the tests assert on its stream-json output and request pattern.
TEST_CLAUDE_VERSION=2.1.330
TEST_CLAUDE_PACKAGE=@anthropic-ai/claude-code

# Installs the pinned CLI unless it is already there, then exports its path
# as BUILDD_TEST_CLAUDE for ctest.
ensure_test_claude() {
  local prefix=$STATE_DIR/test-tools
  local cli=$prefix/node_modules/.bin/claude version
  version=$("$cli" --version 2>/dev/null) || version=""
  # It prints "2.1.330 (Claude Code)".
  if [[ ${version%% *} != "$TEST_CLAUDE_VERSION" ]]; then
    ensure_npm
    log "installing $TEST_CLAUDE_PACKAGE@$TEST_CLAUDE_VERSION into $prefix"
    mkdir -p "$prefix"
    # The package's postinstall step is not needed to run the CLI.
    npm install --no-audit --no-fund --prefix "$prefix" \
      "$TEST_CLAUDE_PACKAGE@$TEST_CLAUDE_VERSION" >&2 ||
      die "npm install $TEST_CLAUDE_PACKAGE@$TEST_CLAUDE_VERSION failed"
    version=$("$cli" --version 2>/dev/null) || version=""
    [[ ${version%% *} == "$TEST_CLAUDE_VERSION" ]] ||
      die "$cli --version printed '$version', expected $TEST_CLAUDE_VERSION"
  fi
  export BUILDD_TEST_CLAUDE=$cli
}

# The Codex CLI the runner's tests drive against a fake Responses API.
# Pinned: the tests assert on its --json output and request pattern.
TEST_CODEX_VERSION=0.169.0
TEST_CODEX_PACKAGE=@openai/codex

# Installs the pinned CLI unless it is already there, then exports its path
# as BUILDD_TEST_CODEX for ctest.
ensure_test_codex() {
  local prefix=$STATE_DIR/test-tools
  local cli=$prefix/node_modules/.bin/codex version
  version=$("$cli" --version 2>/dev/null) || version=""
  # It prints "codex-cli 0.169.0".
  if [[ ${version##* } != "$TEST_CODEX_VERSION" ]]; then
    ensure_npm
    log "installing $TEST_CODEX_PACKAGE@$TEST_CODEX_VERSION into $prefix"
    mkdir -p "$prefix"
    # The native binary comes as an optional dependency for this platform.
    npm install --no-audit --no-fund --prefix "$prefix" \
      "$TEST_CODEX_PACKAGE@$TEST_CODEX_VERSION" >&2 ||
      die "npm install $TEST_CODEX_PACKAGE@$TEST_CODEX_VERSION failed"
    version=$("$cli" --version 2>/dev/null) || version=""
    [[ ${version##* } == "$TEST_CODEX_VERSION" ]] ||
      die "$cli --version printed '$version', expected $TEST_CODEX_VERSION"
  fi
  export BUILDD_TEST_CODEX=$cli
}
