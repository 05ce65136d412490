# shellcheck shell=bash
# Sourced, not run: a PRIVATE apt configuration for Debian 12 (bookworm),
# whatever Debian release the host runs (12 or 13). Used by
# scripts/kube/build.sh (the kubernetes source, Go 1.19) and
# scripts/fetch-regress.sh (postgresql-15's regression scripts).
#
#   . scripts/lib/bookworm-apt.sh
#   bookworm_apt_init DIR     writes DIR/sources.list and private lists, cache
#                             and preferences dirs under DIR, sets the array
#                             APT_PRIV (options for apt-get / apt-cache) and
#                             SRCLIST, and runs `apt-get update` on them
#
# The system's apt configuration, lists and cache are never touched: every
# path apt writes to is under DIR. `deb` and `deb-src` lines for bookworm,
# bookworm-updates and bookworm-security on the mirrors the host's Debian
# sources use (deb822 *.sources and one-line *.list; deb.debian.org when
# none is found); signed by debian-archive-keyring, which Debian 12 and 13
# both ship with bookworm's keys.
#
# Overrides: PGSR_BOOKWORM_SOURCES: the whole sources list, one-line format
# (`deb-src` lines alone get matching `deb` lines); PGSR_BOOKWORM_MIRROR /
# PGSR_BOOKWORM_SECURITY_MIRROR: the mirror URIs.

# The host's Debian sources as "URI SUITE" lines (`deb` entries only;
# disabled files, i.e. other suffixes, are ignored like apt does).
system_debian_uris() {
  local f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    awk '
      /^[ \t]*deb[ \t]/ {
        line = $0; sub(/^[ \t]*deb[ \t]+/, "", line)
        if (line ~ /^\[/) sub(/^\[[^]]*\][ \t]*/, "", line)
        split(line, F, /[ \t]+/)
        if (F[1] != "" && F[2] != "") print F[1], F[2]
      }' "$f"
  done
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk '
      function flush() {
        if (types ~ /(^|[ \t])deb([ \t]|$)/ && enabled != "no" && uris != "") {
          n = split(uris, U, /[ \t]+/); m = split(suites, S, /[ \t]+/)
          for (i = 1; i <= n; i++) for (j = 1; j <= m; j++)
            if (U[i] != "" && S[j] != "") print U[i], S[j]
        }
        types = uris = suites = enabled = ""
      }
      /^[ \t]*#/ { next }
      /^[ \t]*$/ { flush(); next }
      {
        k = tolower($1); sub(/:$/, "", k); v = $0; sub(/^[^:]*:[ \t]*/, "", v)
        if (k == "types") types = v; else if (k == "uris") uris = v
        else if (k == "suites") suites = v; else if (k == "enabled") enabled = tolower(v)
      }
      END { flush() }' "$f"
  done
}

bookworm_apt_init() {
  local dir="$1" sys_uris mirror sec_mirror keyring="" k signed arch entry
  mkdir -p "$dir/lists/partial" "$dir/cache/archives/partial" "$dir/parts" "$dir/preferences.d"
  sys_uris="$(system_debian_uris | grep -E '^(https?|file)://[^[:space:]]*debian' || true)"
  # The security archive: a *-security suite (or a debian-security URI); the
  # main archive: any other Debian URI (not ports/debug archives).
  mirror="${PGSR_BOOKWORM_MIRROR:-$(awk '$2 !~ /-security$/ && $1 !~ /debian-(security|ports|debug)/ { print $1; exit }' <<<"$sys_uris")}"
  sec_mirror="${PGSR_BOOKWORM_SECURITY_MIRROR:-$(awk '$2 ~ /-security$/ || $1 ~ /debian-security/ { print $1; exit }' <<<"$sys_uris")}"
  mirror="${mirror:-http://deb.debian.org/debian}"
  sec_mirror="${sec_mirror:-http://deb.debian.org/debian-security}"
  for k in /usr/share/keyrings/debian-archive-keyring.gpg /usr/share/keyrings/debian-archive-keyring.pgp; do
    if [ -f "$k" ]; then keyring="$k"; break; fi
  done
  signed="${keyring:+signed-by=$keyring}"
  arch="$(dpkg --print-architecture)"
  SRCLIST="$dir/sources.list"
  if [ -n "${PGSR_BOOKWORM_SOURCES:-}" ]; then
    {
      printf '%s\n' "$PGSR_BOOKWORM_SOURCES"
      if ! grep -qE '^[[:space:]]*deb[[:space:]]' <<<"$PGSR_BOOKWORM_SOURCES"; then
        sed -n -E 's/^[[:space:]]*deb-src[[:space:]]+/deb /p' <<<"$PGSR_BOOKWORM_SOURCES"
      fi
    } > "$SRCLIST"
  else
    for entry in "$mirror bookworm" "$mirror bookworm-updates" "$sec_mirror bookworm-security"; do
      echo "deb [arch=$arch${signed:+ $signed}] $entry main"
      echo "deb-src ${signed:+[$signed] }$entry main"
    done > "$SRCLIST"
  fi
  echo "private sources list:"; sed 's/^/  /' "$SRCLIST"
  # Private lists, cache and preferences; no host pinning or Default-Release
  # may pick another release's package.
  APT_PRIV=(-o "Dir::Etc::SourceList=$SRCLIST" -o "Dir::Etc::SourceParts=$dir/parts"
            -o "Dir::State::Lists=$dir/lists" -o "Dir::Cache=$dir/cache"
            -o "Dir::Etc::Preferences=$dir/preferences"
            -o "Dir::Etc::PreferencesParts=$dir/preferences.d"
            -o "APT::Default-Release=" -o "Acquire::Languages=none"
            -o "APT::Sandbox::User=root" -o "Debug::NoLocking=1")
  apt-get "${APT_PRIV[@]}" update -qq
}
