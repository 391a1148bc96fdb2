// SPDX-License-Identifier: GPL-2.0
/*
 * addrsel test module for Linux: answers "which source address would this kernel pick for
 * destination D?" from inside the kernel, in the caller's network namespace, with the same
 * functions a UDP connect() ends up in: ip6_dst_lookup_flow() (route lookup and
 * ipv6_dev_get_saddr(), or the route's preferred source) for IPv6, and the IPv4 route output
 * lookup (fib_result_prefsrc / inet_select_addr, which covers routes with an IPv6 gateway)
 * for IPv4.
 *
 * Interface: /proc/net/addrsel, one file per network namespace. Write a struct
 * addrsel_query, read back a struct addrsel_answer (see ../include/addrsel_kmod.h).
 */
#include <linux/module.h>
#include <linux/proc_fs.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <net/ip.h>
#include <net/ip6_route.h>
#include <net/addrconf.h>
#include <net/net_namespace.h>
#include <net/route.h>

#include <linux/version.h>

#include "addrsel_kmod.h"

/* pde_data() is PDE_DATA() before 5.17 (bullseye's 5.10). */
#if LINUX_VERSION_CODE < KERNEL_VERSION(5, 17, 0)
#define pde_data(inode) PDE_DATA(inode)
#endif

struct addrsel_file {
	struct net *net;
	struct addrsel_answer answer;
	bool answered;
};

static unsigned int kernel_prefs(u32 prefs)
{
	unsigned int p = 0;

	if (prefs & ADDRSEL_PREFER_TEMPORARY)
		p |= IPV6_PREFER_SRC_TMP;
	if (prefs & ADDRSEL_PREFER_PUBLIC)
		p |= IPV6_PREFER_SRC_PUBLIC;
	if (prefs & ADDRSEL_PREFER_CAREOF)
		p |= IPV6_PREFER_SRC_COA;
	if (prefs & ADDRSEL_PREFER_HOME)
		p |= IPV6_PREFER_SRC_HOME;
	return p;
}

static void answer_inet6(struct net *net, const struct addrsel_query *q, struct addrsel_answer *a)
{
	/* What a UDP connect() to port 9 puts into the flow. */
	struct flowi6 fl6 = {
		.flowi6_oif = q->ifindex,
		.flowi6_proto = IPPROTO_UDP,
		.fl6_dport = htons(9),
	};
	struct dst_entry *dst;
	struct rt6_info *rt;
	struct fib6_info *from;
	int err;

	memcpy(&fl6.daddr, q->dst, sizeof(fl6.daddr));
	a->family = ADDRSEL_FAMILY_INET6;
	if (!q->prefs) {
		/* Exactly the connect() path: route lookup, then source selection. */
		dst = ip6_dst_lookup_flow(net, NULL, &fl6, NULL);
		if (IS_ERR(dst)) {
			a->error = -PTR_ERR(dst);
			return;
		}
		memcpy(a->src, &fl6.saddr, sizeof(fl6.saddr));
		dst_release(dst);
		return;
	}
	/*
	 * With preferences, which only a socket carries: the steps of ip6_dst_lookup_tail()
	 * for an unbound socket, with the socket's srcprefs replaced by the query's.
	 */
	dst = ip6_route_output(net, NULL, &fl6);
	rt = dst->error ? NULL : (struct rt6_info *)dst;
	rcu_read_lock();
	from = rt ? rcu_dereference(rt->from) : NULL;
#ifdef ADDRSEL_SADDR_L3MDEV
	err = ip6_route_get_saddr(net, from, &fl6.daddr, kernel_prefs(q->prefs), fl6.flowi6_l3mdev, &fl6.saddr);
#else
	err = ip6_route_get_saddr(net, from, &fl6.daddr, kernel_prefs(q->prefs), &fl6.saddr);
#endif
	rcu_read_unlock();
	if (err) {
		dst_release(dst);
		a->error = -err;
		return;
	}
	if (dst->error) {
		/* As the kernel does: look up again, now with the chosen source. */
		dst_release(dst);
		dst = ip6_route_output(net, NULL, &fl6);
	}
	err = dst->error;
	dst_release(dst);
	if (err)
		a->error = -err;
	else
		memcpy(a->src, &fl6.saddr, sizeof(fl6.saddr));
}

static void answer_inet(struct net *net, const struct addrsel_query *q, struct addrsel_answer *a)
{
	/* The route output lookup of ip_route_connect() for an unbound UDP socket. */
	struct flowi4 fl4 = {
		.flowi4_oif = q->ifindex,
		.flowi4_proto = IPPROTO_UDP,
		.fl4_dport = htons(9),
	};
	struct rtable *rt;

	memcpy(&fl4.daddr, q->dst, sizeof(fl4.daddr));
	a->family = ADDRSEL_FAMILY_INET;
	rt = ip_route_output_key(net, &fl4);
	if (IS_ERR(rt)) {
		a->error = -PTR_ERR(rt);
		return;
	}
	memcpy(a->src, &fl4.saddr, sizeof(fl4.saddr));
	ip_rt_put(rt);
}

static int addrsel_open(struct inode *inode, struct file *file)
{
	struct addrsel_file *f = kzalloc(sizeof(*f), GFP_KERNEL);

	if (!f)
		return -ENOMEM;
	f->net = pde_data(inode);
	file->private_data = f;
	return 0;
}

static int addrsel_release(struct inode *inode, struct file *file)
{
	kfree(file->private_data);
	return 0;
}

static ssize_t addrsel_write(struct file *file, const char __user *buf, size_t len, loff_t *pos)
{
	struct addrsel_file *f = file->private_data;
	struct addrsel_query q;

	if (len != sizeof(q))
		return -EINVAL;
	if (copy_from_user(&q, buf, sizeof(q)))
		return -EFAULT;
	memset(&f->answer, 0, sizeof(f->answer));
	f->answer.version = ADDRSEL_KMOD_VERSION;
	if (q.version != ADDRSEL_KMOD_VERSION)
		f->answer.error = EPROTO;
	else if (q.family == ADDRSEL_FAMILY_INET6)
		answer_inet6(f->net, &q, &f->answer);
	else if (q.family == ADDRSEL_FAMILY_INET)
		answer_inet(f->net, &q, &f->answer);
	else
		f->answer.error = EAFNOSUPPORT;
	f->answered = true;
	return len;
}

static ssize_t addrsel_read(struct file *file, char __user *buf, size_t len, loff_t *pos)
{
	struct addrsel_file *f = file->private_data;
	loff_t start = 0;

	/* Every read returns the whole answer to the last query, whatever the file offset. */
	if (!f->answered)
		return -ENODATA;
	return simple_read_from_buffer(buf, len, &start, &f->answer, sizeof(f->answer));
}

static const struct proc_ops addrsel_proc_ops = {
	.proc_open = addrsel_open,
	.proc_release = addrsel_release,
	.proc_read = addrsel_read,
	.proc_write = addrsel_write,
	.proc_lseek = noop_llseek,
};

static int __net_init addrsel_net_init(struct net *net)
{
	if (!proc_create_data("addrsel", 0600, net->proc_net, &addrsel_proc_ops, net))
		return -ENOMEM;
	return 0;
}

static void __net_exit addrsel_net_exit(struct net *net)
{
	remove_proc_entry("addrsel", net->proc_net);
}

static struct pernet_operations addrsel_net_ops = {
	.init = addrsel_net_init,
	.exit = addrsel_net_exit,
};

static int __init addrsel_init(void)
{
#ifdef ADDRSEL_FAULT_SKIP_INIT
	/* Harness self-test: an init that "succeeds" without creating the interface. */
	return 0;
#endif
	return register_pernet_subsys(&addrsel_net_ops);
}

static void __exit addrsel_exit(void)
{
#ifndef ADDRSEL_FAULT_SKIP_INIT
	unregister_pernet_subsys(&addrsel_net_ops);
#endif
}

module_init(addrsel_init);
module_exit(addrsel_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("addrsel: the kernel's own source address selection, queried per network namespace");
