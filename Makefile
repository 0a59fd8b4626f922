# make demo   sets everything up and runs offline-fix on the bundled demo disk
# make test   sets everything up and runs the whole test suite
# Both install what they need: Debian packages (when missing), .venv, the Python packages.

PYTHON ?= python3
VENV   := .venv
VPY    := $(VENV)/bin/python
APT_PACKAGES := ntfs-3g libntfs-3g89 qemu-utils fdisk libhivex-bin python3-hivex libwin-hivex-perl sleuthkit mtools dosfstools xz-utils util-linux e2fsprogs chromium
DEMO_DIR := out/demo

.PHONY: all setup system-deps venv test demo bench fuzz soak clean

all: test

setup: system-deps venv

# Debian packages: installed only when one is missing (apt-get update first, as root or with sudo).
system-deps:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null; then SUDO="sudo"; \
	  else echo "need root to install:$$missing" >&2; exit 1; fi; \
	  $$SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq $$missing; \
	fi

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q -e '.[test,aws,azure]'
	@# hivex's Python binding comes from Debian (python3-hivex); expose just it to the venv.
	@site=$$($(VPY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'); \
	mkdir -p $(VENV)/debian-hivex; \
	for f in /usr/lib/python3/dist-packages/hivex /usr/lib/python3/dist-packages/libhivexmod*.so; do \
	  [ -e "$$f" ] && ln -sfn "$$f" $(VENV)/debian-hivex/; \
	done; \
	echo "$$(pwd)/$(VENV)/debian-hivex" > "$$site/debian-hivex.pth"
	@touch $@

test: setup
	$(VPY) -m pytest -q -p no:cacheprovider

demo: setup
	@mkdir -p $(DEMO_DIR)
	$(VPY) -m images.demo --out $(DEMO_DIR)

bench: setup
	$(VPY) -m bench.run_all

soak: setup
	$(VPY) -m pytest -q -p no:cacheprovider -m slow tests/test_soak.py

fuzz: setup
	$(VPY) -m pip install -q -e '.[fuzz]'
	$(VPY) -m tests.fuzz.run_all

clean:
	rm -rf $(VENV) out .pytest_cache
