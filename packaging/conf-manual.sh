#!/usr/bin/env bash
# Writes crmfs.conf(5) to stdout from mount.conf.example, the one place every config key is documented:
# the example, comments and all, is the page's FILE FORMAT.
set -euo pipefail
example=${1:-"$(dirname "$0")/../mount.conf.example"}
date=${2:-"$(date -u +'%B %-d, %Y')"}
cat <<HEAD
.Dd $date
.Dt CRMFS.CONF 5
.Os
.Sh NAME
.Nm crmfs.conf
.Nd mount configuration of crmfs
.Sh DESCRIPTION
A crmfs mount configuration is a TOML file naming the Entra ID tenant and SharePoint site
.Pq Cm [graph] ,
the Salesforce org
.Pq Cm [salesforce] ,
the state directory and cache
.Pq Cm [cache] ,
how writes are sent
.Pq Cm [writeback] ,
how fresh the mount stays
.Pq Cm [freshness] ,
and one
.Cm [[objects]]
table per CRM object shown as a directory.
It must not be writable by group or others; secret files it names must be 0600 and the user's.
.Pp
A bare
.Ar NAME
given to
.Xr crmfs 1
means
.Pa \$XDG_CONFIG_HOME/crmfs/NAME.conf
.Pq Pa ~/.config/crmfs/ ;
without a
.Cm [cache] directory ,
the state is kept in
.Pa \$XDG_STATE_HOME/crmfs/NAME
.Pq Pa ~/.local/state/crmfs/ .
.Pp
.Ql crmfs check Ar config
validates a configuration against both services.
.Sh FILE FORMAT
Every key, with its default and meaning, as
.Pa /usr/share/doc/crmfs/mount.conf.example
has it:
.Bd -literal
HEAD
# Roff: a backslash is \e; a line starting with . or ' needs \& in front.
sed -e 's/\\/\\e/g' -e "s/^\([.']\)/\\\\\&\1/" "$example"
cat <<'TAIL'
.Ed
.Sh SEE ALSO
.Xr crmfs 1 ,
.Xr mount.crmfs 8
TAIL
