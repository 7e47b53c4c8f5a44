# Nomad job exported by fleet from project full.
# Run with: nomad job run FILE
# Each comment says what fleet does that this job cannot, or does differently.
# The secrets are read from the Nomad variable nomad/jobs/full, which this job does not contain; create it first:
#   nomad var put nomad/jobs/full \
#     DATABASE_URL="$DATABASE_URL" \
#     web_API_KEY="$(cat '/etc/api key')"
# hooks (pre_apply, post_apply, on_failure) are not exported: they run on the machine that runs fleet apply; run them around the deploy command instead.
# registry ghcr.io: credentials (user acme, password from env:GHCR_TOKEN) are not exported; give the Docker driver its credentials on the clients (plugin "docker" { config { auth { config = ... } } }).
job "full" {
  datacenters = ["*"]
  type        = "service"
  # depends_on [db]: not exported; the orchestrator starts services in no order, so each must wait for what it needs itself.
  # image_delivery: push: the orchestrator's nodes pull ghcr.io/acme/web:1.4.2 from a registry; push it to one first.
  # update.parallelism waves [1, 50%]: only the first step size is exported.
  # history 5: revisions are kept by the orchestrator.
  group "web" {
    count = 4
    # fleet's hosts selector "role in (web,db),zone!=c"; node names are the inventory's host names.
    # the clients need the inventory's labels as meta:
    #   db1: client { meta { role = "db" } }
    #   web1: client { meta { role = "web" } }
    #   web1: client { meta { zone = "a" } }
    #   web2: client { meta { role = "web" } }
    #   web2: client { meta { zone = "b" } }
    constraint {
      attribute = "${meta.role}"
      operator  = "regexp"
      value     = "^(web|db)$"
    }
    constraint {
      attribute = "${meta.zone}"
      operator  = "!="
      value     = "c"
    }
    # max_per_host 2.
    constraint {
      operator  = "distinct_property"
      attribute = "${node.unique.name}"
      value     = "2"
    }
    spread {
      attribute = "${meta.zone}"
    }
    # update.max_failure_ratio 0.25: not exported; one unhealthy allocation fails the deployment.
    update {
      max_parallel      = 1
      health_check      = "checks"
      min_healthy_time  = "5s"
      healthy_deadline  = "15m"
      progress_deadline = "16m"
      # update.failure_action continue: not exported; a Nomad deployment stops at the first unhealthy allocation.
      auto_revert       = false
      # update.order start-first: new allocations start beside the old as canaries and are promoted once healthy.
      canary            = 1
      auto_promote      = true
    }
    # restart on-failure:3.
    restart {
      attempts = 3
      mode     = "fail"
    }
    network {
      port "p8080" {
        to = 8080
      }
    }
    # volume data: a host volume each client must declare (client { host_volume "data" { path = ... } }), or change it to a CSI volume.
    volume "data" {
      type   = "host"
      source = "data"
    }
    task "web" {
      driver       = "docker"
      user         = "1000:1000"
      kill_timeout = "30s"
      config {
        image      = "ghcr.io/acme/web:1.4.2"
        force_pull = true
        entrypoint = ["/bin/sh", "-c"]
        command    = "bundle"
        args       = ["exec", "puma"]
        ports      = ["p8080"]
        work_dir   = "/app"
        labels     = { "team" = "shop" }
        # a bind mount of /srv/uploads: the Docker driver allows it when the client enables volumes; the path must exist on each client.
        mount {
          type     = "bind"
          source   = "/srv/uploads"
          target   = "/uploads"
          readonly = true
        }
        # networks [backend]: not exported; the allocations reach each other through the ports above (or Consul Connect).
      }
      env {
        RAILS_ENV = "production"
      }
      volume_mount {
        volume      = "data"
        destination = "/var/lib/app"
        read_only   = false
      }
      # secrets (API_KEY from file:/etc/api key as web_API_KEY, DATABASE_URL from env:DATABASE_URL as DATABASE_URL) from the Nomad variable nomad/jobs/full (see the top of this file).
      template {
        data        = "{{ with nomadVar \"nomad/jobs/full\" }}\nAPI_KEY={{ index . \"web_API_KEY\" | toJSON }}\nDATABASE_URL={{ index . \"DATABASE_URL\" | toJSON }}\n{{ end }}\n"
        destination = "secrets/fleet.env"
        env         = true
      }
      # resources.cpus 1.5: Nomad reserves CPU in MHz; 1000 MHz a core is assumed.
      resources {
        cpu    = 1500
        memory = 512
      }
      service {
        name = "full-web"
        port = "p8080"
        # healthcheck start_period 5s: not exported; Nomad counts failures from the start (check_restart's grace restarts the task, which fleet does not).
        check {
          type                     = "http"
          path                     = "/up"
          port                     = "p8080"
          interval                 = "500ms"
          timeout                  = "2s"
          failures_before_critical = 3
        }
      }
      # pre_stop [/app/drain]: not exported; Nomad runs nothing in a task before stopping it (shutdown_delay only waits).
      # proxy shop.example.com/ (tls true): not exported; route it with the cluster's ingress (Traefik or Fabio reading the service above).
    }
  }
  group "api" {
    count = 2
    # fleet's hosts selector "group=front"; node names are the inventory's host names.
    constraint {
      attribute = "${node.unique.name}"
      operator  = "regexp"
      value     = "^(web1|web2)$"
    }
    constraint {
      operator = "distinct_hosts"
      value    = "true"
    }
    # update.parallelism 50%: Nomad takes a count, 1 of 2 here.
    update {
      max_parallel      = 1
      health_check      = "checks"
      min_healthy_time  = "5s"
      healthy_deadline  = "2m"
      progress_deadline = "10m"
      auto_revert       = true
      # update.order start-first: new allocations start beside the old as canaries and are promoted once healthy.
      canary            = 1
      auto_promote      = true
    }
    network {
      port "p9000" {
        to = 9000
      }
    }
    task "api" {
      driver       = "docker"
      kill_timeout = "10s"
      config {
        image = "ghcr.io/acme/api:1"
        ports = ["p9000"]
      }
      # no resources in fleet.yaml: Nomad reserves its defaults (100 MHz, 300 MB).
      service {
        name = "full-api"
        port = "p9000"
        check {
          type                     = "tcp"
          port                     = "p9000"
          interval                 = "1s"
          timeout                  = "2s"
          failures_before_critical = 3
        }
      }
      # proxy api.example.com/v1 (tls internal): not exported; route it with the cluster's ingress (Traefik or Fabio reading the service above).
    }
  }
  # update.order start-first: exported as stop-first, as fleet applies it: the service publishes fixed host ports.
  group "db" {
    # fleet runs one instance on every selected host (web2): a count of the inventory's hosts, one per node. A system job does this by itself, but a job has one type.
    count = 1
    # fleet's hosts selector "gpu"; node names are the inventory's host names.
    # the clients need the inventory's labels as meta:
    #   web2: client { meta { gpu = "yes" } }
    constraint {
      attribute = "${meta.gpu}"
      operator  = "is_set"
    }
    constraint {
      operator = "distinct_hosts"
      value    = "true"
    }
    # update.order stop-first: Nomad stops an old allocation before placing its replacement.
    update {
      max_parallel      = 1
      health_check      = "task_states"
      min_healthy_time  = "5s"
      healthy_deadline  = "2m"
      progress_deadline = "10m"
      auto_revert       = true
    }
    # restart no.
    restart {
      attempts = 0
      mode     = "fail"
    }
    network {
      port "p5432" {
        static = 5432
        to     = 5432
      }
      # bound to 127.0.0.1 by fleet: not exported; choose the address with the client's host_network.
      # udp: Nomad maps the port for TCP and UDP alike.
      port "p9090" {
        static = 9090
        to     = 9090
      }
    }
    # volume pgdata: a host volume each client must declare (client { host_volume "pgdata" { path = ... } }), or change it to a CSI volume.
    volume "pgdata" {
      type   = "host"
      source = "pgdata"
    }
    task "db" {
      driver       = "docker"
      user         = "postgres"
      kill_timeout = "10s"
      config {
        image = "postgres:16"
        ports = ["p5432", "p9090"]
      }
      volume_mount {
        volume      = "pgdata"
        destination = "/var/lib/postgresql/data"
        read_only   = false
      }
      # no resources in fleet.yaml: Nomad reserves its defaults (100 MHz, 300 MB).
      service {
        name = "full-db"
        # healthcheck docker: not exported; Nomad does not read the image's HEALTHCHECK: write a check.
      }
    }
  }
}
