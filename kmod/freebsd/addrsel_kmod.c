/*
 * addrsel test module for FreeBSD: answers "which source address would this kernel pick for
 * destination D?" from inside the kernel, in the caller's VNET, through the sysctl
 * net.addrsel.query (new value: struct addrsel_query, old value: struct addrsel_answer).
 *
 * IPv6 goes through the kernel's own source selection, in6_selectsrc_addr(). IPv4 does what
 * in_pcbladdr() does: a FIB lookup and the address of the nexthop's ifa; when that ifa is
 * not IPv4 (an IPv4 route with an IPv6 next hop on an interface without IPv4),
 * in_pcbladdr() ends with INADDR_ANY and connect() fails with EHOSTUNREACH, so the module
 * answers EHOSTUNREACH too.
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
#include <netinet6/in6_var.h>
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
	NET_EPOCH_ENTER(et);
	error = in6_selectsrc_addr(RT_DEFAULT_FIB, &dst, q->ifindex, NULL, &src, NULL);
	NET_EPOCH_EXIT(et);
	if (error != 0)
		a->error = error;
	else
		memcpy(a->src, &src, sizeof(src));
}

static void
answer_inet(const struct addrsel_query *q, struct addrsel_answer *a)
{
	struct epoch_tracker et;
	struct nhop_object *nh;
	struct in_addr dst;
	struct ifaddr *ifa;

	memcpy(&dst, q->dst, sizeof(dst));
	a->family = ADDRSEL_FAMILY_INET;
	NET_EPOCH_ENTER(et);
	nh = fib4_lookup(RT_DEFAULT_FIB, dst, 0, NHR_NONE, 0);
	if (nh == NULL || nh->nh_ifp == NULL) {
		a->error = ENETUNREACH;
	} else if (nh->nh_ifp->if_flags & IFF_LOOPBACK) {
		/* A route to one of our own addresses: in_pcbladdr uses that address. */
		memcpy(a->src, &dst, sizeof(dst));
	} else {
		ifa = nh->nh_ifa;
		if (ifa == NULL || ifa->ifa_addr->sa_family != AF_INET)
			a->error = EHOSTUNREACH;
		else
			memcpy(a->src, &((struct sockaddr_in *)ifa->ifa_addr)->sin_addr, sizeof(dst));
	}
	NET_EPOCH_EXIT(et);
}

static int
addrsel_query_sysctl(SYSCTL_HANDLER_ARGS)
{
	struct addrsel_query q;
	struct addrsel_answer a;
	int error;

	if (req->newptr == NULL)
		return (EINVAL);
	error = SYSCTL_IN(req, &q, sizeof(q));
	if (error != 0)
		return (error);
	bzero(&a, sizeof(a));
	a.version = ADDRSEL_KMOD_VERSION;
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
