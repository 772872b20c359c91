# harbor_orm — PGXS build.
#
#   make                 build the extension (and the client under src/client)
#   make install         install both
#   make installcheck    run the pg_regress suite, the isolation specs and the
#                        TAP tests against a running server (the TAP tests
#                        start their own clusters and must not run as root)
#
# Each framework can be switched off on the command line, so the test command
# runs them one by one:
#   make installcheck ISOLATION= TAP_TESTS=   pg_regress only
#   make installcheck REGRESS= TAP_TESTS=     isolation specs only
#   make installcheck REGRESS= ISOLATION=     TAP tests only
#
# Released install scripts are never edited: sql/harbor_orm--0.1.0.sql is
# 0.1.0 as released, and every later change to an SQL object ships in an
# upgrade script sql/harbor_orm--A--B.sql.  There is no separate install
# script for later versions: CREATE EXTENSION runs 0.1.0 and the upgrade
# path, so a fresh install and an upgraded one cannot drift apart.

EXTENSION   = harbor_orm
EXTVERSION  = $(shell sed -n "s/^default_version = '\(.*\)'/\1/p" harbor_orm.control)
MODULE_big  = harbor_orm
OBJS        = $(patsubst %.c,%.o,$(sort $(wildcard src/*.c)))
DATA        = $(wildcard sql/harbor_orm--*.sql)

REGRESS     = $(sort $(basename $(notdir $(filter-out sql/harbor_orm--%,$(wildcard sql/*.sql)))))
REGRESS_OPTS = --inputdir=. --outputdir=. --dbname=harbor_regress

# Isolation specs: specs/<name>.spec against expected/<name>.out, output in
# output_iso/.  The library is preloaded by the cluster (shared_preload_libraries).
# The DDL specs (ddl_*) run last: one that crashes the server must not make
# the specs after it fail while the server recovers.
ISOLATION_SPECS = $(sort $(basename $(notdir $(wildcard specs/*.spec))))
ISOLATION   = $(filter-out ddl_%,$(ISOLATION_SPECS)) $(filter ddl_%,$(ISOLATION_SPECS))
ISOLATION_OPTS = --load-extension=harbor_orm

# Perl TAP tests: t/*.pl with PostgreSQL::Test::Cluster.
TAP_TESTS   = 1

PG_CONFIG  ?= pg_config
PG_CPPFLAGS = -I$(srcdir)/src -std=gnu11 -Wall -Wextra -Werror \
              -Wno-unused-parameter -Wno-missing-field-initializers \
              -Wno-sign-compare -Wno-cast-function-type
SHLIB_LINK  =

PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

$(OBJS): $(wildcard src/*.h)

# The client library and command-line tool build with the extension.
ifneq ($(wildcard src/client/Makefile),)
all: client
client:
	$(MAKE) -C src/client PG_CONFIG=$(PG_CONFIG)
install: install-client
install-client: client
	$(MAKE) -C src/client install PG_CONFIG=$(PG_CONFIG)
clean: clean-client
clean-client:
	$(MAKE) -C src/client clean
.PHONY: client install-client clean-client
endif

# META.json must carry the control file's version.
all: check-meta
check-meta:
	@test -f sql/harbor_orm--0.1.0--$(EXTVERSION).sql || test "$(EXTVERSION)" = 0.1.0 || { echo "no upgrade script to $(EXTVERSION)"; exit 1; }
	@grep -q '"version": "$(EXTVERSION)"' META.json || { echo "META.json version differs from harbor_orm.control ($(EXTVERSION))"; exit 1; }
.PHONY: check-meta

# A PGXN distribution: the committed tree (HEAD) as
# $(DISTDIR)/harbor_orm-<version>.zip, every file under harbor_orm-<version>/.
# test/suites/release.sh validates it (test/lib/pgxn_meta.py) and builds it.
DISTDIR    ?= .
dist:
	git archive --format zip --prefix=$(EXTENSION)-$(EXTVERSION)/ -o $(DISTDIR)/$(EXTENSION)-$(EXTVERSION).zip HEAD
.PHONY: dist
