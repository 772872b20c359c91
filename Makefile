# harbor_orm — PGXS build.
#
#   make                 build the extension (and the client under src/client)
#   make install         install both
#   make installcheck    run the pg_regress suite against a running server
#
# The extension script is assembled from sql/parts/, one part per capability,
# in file-name order.

EXTENSION   = harbor_orm
EXTVERSION  = $(shell sed -n "s/^default_version = '\(.*\)'/\1/p" harbor_orm.control)
MODULE_big  = harbor_orm
OBJS        = $(patsubst %.c,%.o,$(sort $(wildcard src/*.c)))
DATA_built  = sql/harbor_orm--$(EXTVERSION).sql
DATA        = $(filter-out $(DATA_built),$(wildcard sql/harbor_orm--*--*.sql))
SCRIPT_PARTS = $(sort $(wildcard sql/parts/*.sql))

REGRESS     = $(sort $(basename $(notdir $(filter-out sql/harbor_orm--%,$(wildcard sql/*.sql)))))
REGRESS_OPTS = --inputdir=. --outputdir=. --dbname=harbor_regress

PG_CONFIG  ?= pg_config
PG_CPPFLAGS = -I$(srcdir)/src -std=gnu11 -Wall -Wextra -Werror \
              -Wno-unused-parameter -Wno-missing-field-initializers \
              -Wno-sign-compare -Wno-cast-function-type
SHLIB_LINK  =

PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# Rebuilt whenever a part changes, appears or disappears; the file is only
# replaced when its content differs, so an unchanged script is not reinstalled.
$(DATA_built): $(SCRIPT_PARTS) harbor_orm.control FORCE
	@{ echo '-- harbor_orm $(EXTVERSION): generated from sql/parts/*.sql by make; edit the parts.'; \
	   printf '%s\n' '\echo Use "CREATE EXTENSION harbor_orm" to load this file. \quit'; \
	   for f in $(SCRIPT_PARTS); do echo; echo "-- ---- $$f ----"; cat $$f; done; } > $@.tmp
	@if cmp -s $@.tmp $@; then rm -f $@.tmp; else mv $@.tmp $@; fi
FORCE:
.PHONY: FORCE

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
	@grep -q '"version": "$(EXTVERSION)"' META.json || { echo "META.json version differs from harbor_orm.control ($(EXTVERSION))"; exit 1; }
.PHONY: check-meta
