/*
 * addrsel test kernel module ABI, shared by the Linux and FreeBSD modules and (through
 * bindgen, `cargo xtask codegen`) by the agent.
 *
 * The question: which source address would this kernel pick for destination `dst`
 * (optionally leaving through interface `ifindex`, with source preferences `prefs`), or
 * which error? One query in, one answer out:
 *   Linux:   write a struct addrsel_query to /proc/net/addrsel (per network namespace),
 *            then read a struct addrsel_answer from the same open file.
 *   FreeBSD: sysctl net.addrsel.query (per VNET): new value = query, old value = answer.
 */
#ifndef ADDRSEL_KMOD_H
#define ADDRSEL_KMOD_H

#ifdef __KERNEL__
#include <linux/types.h>
#elif defined(_KERNEL)
#include <sys/types.h>
#else
#include <stdint.h>
#endif

#define ADDRSEL_KMOD_VERSION 1

/* Address families, the same numbers on every OS. */
#define ADDRSEL_FAMILY_INET 4
#define ADDRSEL_FAMILY_INET6 6

/* Source preferences (IPv6 only). */
#define ADDRSEL_PREFER_TEMPORARY 0x1
#define ADDRSEL_PREFER_PUBLIC 0x2
#define ADDRSEL_PREFER_CAREOF 0x4
#define ADDRSEL_PREFER_HOME 0x8

struct addrsel_query {
	uint32_t version; /* ADDRSEL_KMOD_VERSION */
	uint32_t family;  /* ADDRSEL_FAMILY_* */
	uint32_t ifindex; /* 0: any; the zone of a link-local destination */
	uint32_t prefs;   /* ADDRSEL_PREFER_* */
	uint8_t dst[16];  /* IPv4 in the first four bytes, network order */
};

struct addrsel_answer {
	uint32_t version; /* ADDRSEL_KMOD_VERSION */
	int32_t error;    /* 0, or a positive errno */
	uint32_t family;  /* of src */
	/* FreeBSD, IPv4: the family of the route's nexthop address (ADDRSEL_FAMILY_*), which
	 * in_pcbladdr() reads as an IPv4 address whatever it is; 0 when there is no nexthop
	 * or the module does not say (Linux). */
	uint32_t nexthop_family;
	uint8_t src[16];  /* IPv4 in the first four bytes, network order */
};

#endif /* ADDRSEL_KMOD_H */
