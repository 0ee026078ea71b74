"""The DNS zone the SPF tests serve: one domain per case the issue names."""

RELAY_V4 = "198.51.100.7"
RELAY_V6 = "2001:db8:99::7"
INCLUDE = "_spf.relay.example"

# 11 DNS-querying mechanisms: one more than RFC 7208 allows (the Office 365 trap),
# in two TXT strings because one string holds at most 255 characters.
_INCLUDES = [f"include:l{i}.toomany.example" for i in range(11)]
_ELEVEN = " ".join(_INCLUDES[:6]) + '" " ' + " ".join(_INCLUDES[6:])

# A record with an unknown mechanism made of an ANSI colour sequence, CR and DEL:
# pyspf's permerror names it, and the milter logs that.
CONTROL_MECHANISM = "v=spf1 \x1b[31mred\rx\x7f"

ZONE = f"""
{INCLUDE}. 300 IN TXT "v=spf1 ip4:198.51.100.0/24 ip6:2001:db8:99::/48 -all"
pass.example. 300 IN TXT "v=spf1 include:{INCLUDE} -all"
fail.example. 300 IN TXT "v=spf1 ip4:192.0.2.0/24 -all"
quoted.example. 300 IN TXT "v=spf1 ip4:192.0.2.0/24 -all"
soft.example. 300 IN TXT "v=spf1 ip4:192.0.2.0/24 ~all"
neutral.example. 300 IN TXT "v=spf1 ?all"
v6only.example. 300 IN TXT "v=spf1 ip4:192.0.2.0/24 ip6:2001:db8:99::/48 -all"
split.example. 300 IN TXT "v=spf1 ip4:198.51.100.0/24 -all"
toomany.example. 300 IN TXT "v=spf1 {_ELEVEN} -all"
macro.example. 300 IN TXT "v=spf1 exists:%{{l}}.allow.macro.example -all"
alice.allow.macro.example. 300 IN A 127.0.0.2
multi.example. 300 IN TXT "v=spf1 include:{INCLUDE}" " -all"
helo.example. 300 IN TXT "v=spf1 include:{INCLUDE} -all"
ctl.example. 300 IN TXT "{CONTROL_MECHANISM} -all"
"""
ZONE += "".join(
    f'l{i}.toomany.example. 300 IN TXT "v=spf1 ip4:203.0.113.{i} -all"\n' for i in range(11)
)

# A record whose first 255-octet string ends in the '%' of "%{l}": SPF joins the
# strings of a TXT record without a separator, so it is sender-dependent.
_SPLIT_HEAD = "v=spf1 ip4:192.0.2.0/24"
_SPLIT_TAIL = " exists:%"
SPLIT_MACRO_FIRST = _SPLIT_HEAD + " " * (255 - len(_SPLIT_HEAD) - len(_SPLIT_TAIL)) + _SPLIT_TAIL
ZONE += f'splitmacro.example. 300 IN TXT "{SPLIT_MACRO_FIRST}" "{{l}}.allow.macro.example -all"\n'

# Negative answers carry this zone's SOA: a TTL of NEGATIVE_TTL seconds.
NEGATIVE_TTL = 1
ZONE += (
    f"neg.example. 300 IN SOA ns.neg.example. hostmaster.neg.example. 1 3600 600 86400 "
    f"{NEGATIVE_TTL}\n"
    "nodata.neg.example. 300 IN A 192.0.2.1\n"
)  # a name without TXT; gone.neg.example: none

# No answer at all from the nameserver for these.
SILENT = {"silent.example"}

# Sender domains that cannot be DNS names: a label of 64 octets, a name of 258
# octets, an empty label.
LABEL_64 = "x" * 64 + ".example"
NAME_OVER_253 = ".".join(["y" * 62] * 4) + ".example"
EMPTY_LABEL = "a..b.example"
