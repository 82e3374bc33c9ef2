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
