# harbor_orm — PGXS build.
#
#   make                 build the extension (and the client under src/client)
#   make install         install both
#   make installcheck    run the pg_regress suite against a running server
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
# Concurrency specs (specs/*.spec, expected/*.out), run by installcheck.
ISOLATION   = stock-sweep stock-purge
ISOLATION_OPTS = --inputdir=. --outputdir=.

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
