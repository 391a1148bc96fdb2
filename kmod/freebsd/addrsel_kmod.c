/*
 * addrsel test module for FreeBSD: answers "which source address would this kernel pick for
 * destination D?" from inside the kernel, in the caller's VNET, through the sysctl
 * net.addrsel.query (new value: struct addrsel_query, old value: struct addrsel_answer).
 *
 * IPv6 goes through the kernel's own source selection, in6_selectsrc_addr(). IPv4 follows
 * in_pcbladdr() for an unjailed (or VNET-jailed) socket: a FIB lookup and the address of the
 * nexthop's ifa; with no route, the interface whose destination or network matches; with a
 * route through loopback, the interface owning the destination. An IPv4 route whose next
 * hop is IPv6 has an IPv6 ifa, which in_pcbladdr reads as INADDR_ANY, so connect() fails
 * with EHOSTUNREACH: the module answers the same.
 *
 * Socket options cannot be expressed here (in6_selectsrc_addr takes none), so queries with
 * source preferences, or an interface for a destination that is not scoped, are answered
 * EOPNOTSUPP rather than silently ignored. What connect() does before address selection is
 * not modelled: rewriting 0.0.0.0 and 255.255.255.255 (in_pcbconnect_setup) and :: to ::1.
 *
 * The sysctl is registered by the MOD_LOAD handler: if it exists, the module's init ran.
 */
#include <sys/param.h>
#include <sys/systm.h>
#include <sys/kernel.h>
#include <sys/module.h>
#include <sys/socket.h>
#include <sys/sysctl.h>
#include <sys/epoch.h>

#include <net/if.h>
#include <net/if_var.h>
#include <net/vnet.h>
#include <net/route.h>
#include <net/route/nhop.h>

#include <netinet/in.h>
#include <netinet/in_var.h>
#include <netinet/in_fib.h>
#include <netinet/ip6.h>
#include <netinet6/ip6_var.h>

#include "addrsel_kmod.h"

static struct sysctl_ctx_list addrsel_ctx;

static void
answer_inet6(const struct addrsel_query *q, struct addrsel_answer *a)
{
	struct epoch_tracker et;
	struct in6_addr dst, src;
	int error;

	memcpy(&dst, q->dst, sizeof(dst));
	a->family = ADDRSEL_FAMILY_INET6;
	if (q->prefs != 0 || (q->ifindex != 0 && !IN6_IS_SCOPE_EMBED(&dst))) {
		a->error = EOPNOTSUPP;
		return;
	}
	NET_EPOCH_ENTER(et);
	/* connect() refuses a zone that names no interface (sa6_embedscope); this does not. */
	if (q->ifindex != 0 && ifnet_byindex(q->ifindex) == NULL)
		error = ENXIO;
	else
		error = in6_selectsrc_addr(RT_DEFAULT_FIB, &dst, q->ifindex, NULL, &src, NULL);
	NET_EPOCH_EXIT(et);
	if (error != 0)
		a->error = error;
	else
		memcpy(a->src, &src, sizeof(src));
}

/* The interface address in_pcbladdr() falls back to: the one whose peer, then network, is dst. */
static struct in_ifaddr *
ifa_for_destination(struct sockaddr_in *dst, bool also_own_address)
{
	struct in_ifaddr *ia;

	ia = ifatoia(ifa_ifwithdstaddr(sintosa(dst), RT_DEFAULT_FIB));
	if (ia == NULL)
		ia = ifatoia(ifa_ifwithnet(sintosa(dst), 0, RT_DEFAULT_FIB));
	if (ia == NULL && also_own_address)
		ia = ifatoia(ifa_ifwithaddr(sintosa(dst)));
	return (ia);
}

static void
answer_inet(const struct addrsel_query *q, struct addrsel_answer *a)
{
	struct epoch_tracker et;
	struct nhop_object *nh;
	struct sockaddr_in dst;
	struct in_ifaddr *ia;
	struct in_addr laddr;
	int error = 0;

	bzero(&dst, sizeof(dst));
	dst.sin_family = AF_INET;
	dst.sin_len = sizeof(dst);
	memcpy(&dst.sin_addr, q->dst, sizeof(dst.sin_addr));
	laddr.s_addr = INADDR_ANY;
	a->family = ADDRSEL_FAMILY_INET;
	if (q->prefs != 0 || q->ifindex != 0) {
		a->error = EOPNOTSUPP;
		return;
	}
	NET_EPOCH_ENTER(et);
	nh = fib4_lookup(RT_DEFAULT_FIB, dst.sin_addr, 0, NHR_NONE, 0);
	if (nh != NULL && nh->nh_ifa != NULL) {
		/* The cause, not only the symptom: an IPv6 address here is read as INADDR_ANY. */
		if (nh->nh_ifa->ifa_addr->sa_family == AF_INET6)
			a->nexthop_family = ADDRSEL_FAMILY_INET6;
		else if (nh->nh_ifa->ifa_addr->sa_family == AF_INET)
			a->nexthop_family = ADDRSEL_FAMILY_INET;
	}
	if (nh == NULL || nh->nh_ifp == NULL) {
		/* No route: assume dst is on a directly connected network. */
		ia = ifa_for_destination(&dst, false);
		if (ia == NULL)
			error = ENETUNREACH;
		else
			laddr = IA_SIN(ia)->sin_addr;
	} else if ((if_getflags(nh->nh_ifp) & IFF_LOOPBACK) == 0) {
		/* The outgoing interface's address; an IPv6 next hop has an IPv6 ifa. */
		if (nh->nh_ifa != NULL && nh->nh_ifa->ifa_addr->sa_family == AF_INET)
			laddr = IA_SIN(ifatoia(nh->nh_ifa))->sin_addr;
	} else {
		/* A route to ourselves (or a blackhole/reject route through lo0). */
		ia = ifa_for_destination(&dst, true);
		if (ia == NULL)
			error = ENETUNREACH;
		else
			laddr = IA_SIN(ia)->sin_addr;
	}
	NET_EPOCH_EXIT(et);
	if (error == 0 && laddr.s_addr == INADDR_ANY)
		error = EHOSTUNREACH;
	if (error != 0)
		a->error = error;
	else
		memcpy(a->src, &laddr, sizeof(laddr));
}

static int
addrsel_query_sysctl(SYSCTL_HANDLER_ARGS)
{
	struct addrsel_query q;
	struct addrsel_answer a;
	int error;

	bzero(&a, sizeof(a));
	a.version = ADDRSEL_KMOD_VERSION;
	if (req->newptr == NULL) {
		/* A plain read (sysctl -a): no question, so the answer says so. */
		a.error = EINVAL;
		return (SYSCTL_OUT(req, &a, sizeof(a)));
	}
	error = SYSCTL_IN(req, &q, sizeof(q));
	if (error != 0)
		return (error);
	if (q.version != ADDRSEL_KMOD_VERSION)
		a.error = EPROTO;
	else if (q.family == ADDRSEL_FAMILY_INET6)
		answer_inet6(&q, &a);
	else if (q.family == ADDRSEL_FAMILY_INET)
		answer_inet(&q, &a);
	else
		a.error = EAFNOSUPPORT;
	return (SYSCTL_OUT(req, &a, sizeof(a)));
}

static int
addrsel_modevent(module_t mod, int type, void *data)
{
	struct sysctl_oid *node;

	switch (type) {
	case MOD_LOAD:
		sysctl_ctx_init(&addrsel_ctx);
		node = SYSCTL_ADD_NODE(&addrsel_ctx, SYSCTL_STATIC_CHILDREN(_net), OID_AUTO,
		    "addrsel", CTLFLAG_RW | CTLFLAG_MPSAFE, NULL, "addrsel test module");
		if (node == NULL)
			return (ENOMEM);
		/* CTLFLAG_VNET: runs in, and may be written from, the caller's VNET jail. */
		if (SYSCTL_ADD_PROC(&addrsel_ctx, SYSCTL_CHILDREN(node), OID_AUTO, "query",
		    CTLTYPE_OPAQUE | CTLFLAG_RW | CTLFLAG_MPSAFE | CTLFLAG_VNET, NULL, 0,
		    addrsel_query_sysctl, "S,addrsel_query",
		    "write a struct addrsel_query, read a struct addrsel_answer") == NULL) {
			sysctl_ctx_free(&addrsel_ctx);
			return (ENOMEM);
		}
		return (0);
	case MOD_UNLOAD:
		return (sysctl_ctx_free(&addrsel_ctx));
	default:
		return (EOPNOTSUPP);
	}
}

static moduledata_t addrsel_mod = { "addrsel", addrsel_modevent, NULL };
DECLARE_MODULE(addrsel, addrsel_mod, SI_SUB_PROTO_END, SI_ORDER_ANY);
MODULE_VERSION(addrsel, 1);
