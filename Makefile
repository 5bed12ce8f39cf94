# wsnotify: the PostgreSQL extension (PGXS) and the wsnotify-bridge daemon.
#
#   make                 build both (WERROR=-Werror: warnings are errors, as in make test)
#   make install         install both (the bridge into pg_config --bindir)
#   make installcheck    pg_regress against a running server
#   make test            everything, on a throwaway cluster (see test/run)
#   make demo            a throwaway cluster, the bridge and the demo page
#   make fuzz            every libFuzzer target for 60 s from fuzz/corpus (not in make test)
#   make soak            10-minute soak of the bridge (test/soak; not in make test)
#   make bench           wsnotify against a Node.js and a Bun peer, quick (< 5 minutes; bench/run)
#   make bench-full      the same, full size (100,000 connections; about 18 minutes)
#   make deb             the Debian packages, into dist/ (debian/make-deb; lintian)
#   make dist            the PGXN zip, dist/wsnotify-<META.json version>.zip

EXTENSION    = wsnotify
EXTVERSION   = 1.1

MODULE_big   = wsnotify
OBJS         = extension/wsnotify.o \
               extension/send.o \
               extension/routes.o \
               extension/topics.o \
               extension/token.o \
               extension/jwks.o \
               extension/seal.o \
               extension/outbox.o \
               extension/clients.o \
               extension/util.o \
               extension/base64url.o \
               extension/order.o \
               extension/signal.o
DATA         = $(wildcard extension/wsnotify--*.sql)
PGFILEDESC   = "wsnotify - push from PostgreSQL to WebSocket clients"

REGRESS      = $(patsubst sql/%.sql,%,$(sort $(wildcard sql/*.sql)))
REGRESS_OPTS = --inputdir=. --load-extension=plpgsql
ISOLATION    = $(patsubst specs/%.spec,%,$(sort $(wildcard specs/*.spec)))
ISOLATION_OPTS = --inputdir=.

# Warnings are errors in CI and test builds only (test/run passes
# WERROR=-Werror); a user's build, and the Debian packages', warn and go on,
# so that a newer compiler's new warning does not stop an install.
WERROR      ?=
PG_CPPFLAGS  = -Wall -Wextra $(WERROR) -Wno-unused-parameter \
               -Wno-missing-field-initializers -Wno-sign-compare
SHLIB_LINK   = -ljansson -lcrypto

PG_CONFIG   ?= pg_config
PGXS        := $(wildcard $(shell $(PG_CONFIG) --pgxs 2>/dev/null))

# The bridge's compiler flags are its own: those of the environment or the
# command line (dpkg-buildflags' under debian/rules), else bridge/Makefile's
# defaults; never PGXS's, which would reach it as exported variables.  Taken
# before PGXS is included.
BRIDGE_FLAGS := $(foreach v,CFLAGS CPPFLAGS LDFLAGS,$(if $(filter environment command line,$(origin $(v))),$(v)='$($(v))'))

ifneq ($(PGXS),)
include $(PGXS)

all: bridge-all
install: bridge-install
clean: bridge-clean
else
# A fresh machine has no PGXS yet: `make test` and `make demo` install it
# (test/install-deps) before they build; everything else says what to do.
all install installcheck clean:
	@echo "PGXS not found (pg_config --pgxs): run 'make test', 'make demo' or test/install-deps first" >&2
	@exit 1
endif

.PHONY: bridge-all bridge-install bridge-clean test demo fuzz soak bench bench-full deb dist
bridge-all:
	$(MAKE) -C bridge PG_CONFIG=$(PG_CONFIG) EXTVERSION=$(EXTVERSION) WERROR=$(WERROR) $(BRIDGE_FLAGS)
bridge-install:
	$(MAKE) -C bridge PG_CONFIG=$(PG_CONFIG) EXTVERSION=$(EXTVERSION) WERROR=$(WERROR) $(BRIDGE_FLAGS) install
bridge-clean:
	$(MAKE) -C bridge clean

test:
	test/run

demo:
	test/demo

fuzz:
	fuzz/run

soak:
	test/soak/run

bench:
	bench/run

bench-full:
	bench/run --full

deb:
	debian/make-deb

# PGXN's release: git archive of HEAD under wsnotify-<version>/, so META.json is
# at the top of the zip and nothing that git does not hold is in it.
DISTVERSION = $(shell git show HEAD:META.json | sed -n 's/^   "version": "\(.*\)",$$/\1/p')
dist:
	@git diff --quiet HEAD -- || echo "make dist: uncommitted changes are not in the zip (it is HEAD)" >&2
	mkdir -p dist
	git archive --format=zip --prefix=$(EXTENSION)-$(DISTVERSION)/ \
	    -o dist/$(EXTENSION)-$(DISTVERSION).zip HEAD
	@echo "dist/$(EXTENSION)-$(DISTVERSION).zip"
