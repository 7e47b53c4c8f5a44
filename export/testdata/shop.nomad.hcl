# Nomad job exported by fleet from project shop.
# Run with: nomad job run FILE
# Each comment says what fleet does that this job cannot, or does differently.
# The secrets are read from the Nomad variable nomad/jobs/shop, which this job does not contain; create it first:
#   nomad var put nomad/jobs/shop \
#     SHOP_DB_PASSWORD="$SHOP_DB_PASSWORD" \
#     SHOP_MQ_PASSWORD="$SHOP_MQ_PASSWORD"
# registry registry.shop.example.com: credentials (user deploy, password from env:SHOP_REGISTRY_TOKEN) are not exported; give the Docker driver its credentials on the clients (plugin "docker" { config { auth { config = ... } } }).
job "shop" {
  datacenters = ["*"]
  type        = "service"
  group "postgres" {
    # fleet runs one instance on every selected host (db1): a count of the inventory's hosts, one per node. A system job does this by itself, but a job has one type.
    count = 1
    # fleet's hosts selector "db1"; node names are the inventory's host names.
    constraint {
      attribute = "${node.unique.name}"
      operator  = "="
      value     = "db1"
    }
    constraint {
      operator = "distinct_hosts"
      value    = "true"
    }
    # update.order stop-first: Nomad stops an old allocation before placing its replacement.
    update {
      max_parallel      = 1
      health_check      = "checks"
      min_healthy_time  = "5s"
      healthy_deadline  = "2m"
      progress_deadline = "10m"
      # update.failure_action pause: the failed deployment stops where it is, without reverting.
      auto_revert       = false
    }
    network {
      port "p5432" {
        static = 5432
        to     = 5432
      }
    }
    # volume pgdata: a host volume each client must declare (client { host_volume "pgdata" { path = ... } }), or change it to a CSI volume.
    volume "pgdata" {
      type   = "host"
      source = "pgdata"
    }
    task "postgres" {
      driver       = "docker"
      kill_timeout = "1m"
      config {
        image = "postgres:16.4"
        ports = ["p5432"]
      }
      volume_mount {
        volume      = "pgdata"
        destination = "/var/lib/postgresql/data"
        read_only   = false
      }
      # secrets (POSTGRES_PASSWORD from env:SHOP_DB_PASSWORD as SHOP_DB_PASSWORD) from the Nomad variable nomad/jobs/shop (see the top of this file).
      template {
        data        = "{{ with nomadVar \"nomad/jobs/shop\" }}\nPOSTGRES_PASSWORD={{ index . \"SHOP_DB_PASSWORD\" | toJSON }}\n{{ end }}\n"
        destination = "secrets/fleet.env"
        env         = true
      }
      resources {
        memory = 4096
      }
      service {
        name = "shop-postgres"
        # healthcheck start_period 30s: not exported; Nomad counts failures from the start (check_restart's grace restarts the task, which fleet does not).
        check {
          type                     = "script"
          command                  = "pg_isready"
          args                     = ["-U", "postgres"]
          interval                 = "1s"
          timeout                  = "2s"
          failures_before_critical = 3
        }
      }
    }
  }
  group "redis" {
    # fleet runs one instance on every selected host (cache1): a count of the inventory's hosts, one per node. A system job does this by itself, but a job has one type.
    count = 1
    # fleet's hosts selector "cache1"; node names are the inventory's host names.
    constraint {
      attribute = "${node.unique.name}"
      operator  = "="
      value     = "cache1"
    }
    constraint {
      operator = "distinct_hosts"
      value    = "true"
    }
    # update.order stop-first: Nomad stops an old allocation before placing its replacement.
    update {
      max_parallel      = 1
      health_check      = "checks"
      min_healthy_time  = "5s"
      healthy_deadline  = "2m"
      progress_deadline = "10m"
      auto_revert       = true
    }
    network {
      port "p6379" {
        static = 6379
        to     = 6379
      }
    }
    # volume redisdata: a host volume each client must declare (client { host_volume "redisdata" { path = ... } }), or change it to a CSI volume.
    volume "redisdata" {
      type   = "host"
      source = "redisdata"
    }
    task "redis" {
      driver       = "docker"
      kill_timeout = "10s"
      config {
        image   = "redis:7.4"
        command = "redis-server"
        args    = ["--save", "60", "1000", "--maxmemory", "512mb"]
        ports   = ["p6379"]
      }
      volume_mount {
        volume      = "redisdata"
        destination = "/data"
        read_only   = false
      }
      # no resources in fleet.yaml: Nomad reserves its defaults (100 MHz, 300 MB).
      service {
        name = "shop-redis"
        check {
          type                     = "script"
          command                  = "redis-cli"
          args                     = ["ping"]
          interval                 = "1s"
          timeout                  = "2s"
          failures_before_critical = 3
        }
      }
    }
  }
  group "rabbitmq" {
    # fleet runs one instance on every selected host (mq1): a count of the inventory's hosts, one per node. A system job does this by itself, but a job has one type.
    count = 1
    # fleet's hosts selector "mq1"; node names are the inventory's host names.
    constraint {
      attribute = "${node.unique.name}"
      operator  = "="
      value     = "mq1"
    }
    constraint {
      operator = "distinct_hosts"
      value    = "true"
    }
    # update.order stop-first: Nomad stops an old allocation before placing its replacement.
    update {
      max_parallel      = 1
      health_check      = "checks"
      min_healthy_time  = "5s"
      healthy_deadline  = "2m"
      progress_deadline = "10m"
      auto_revert       = true
    }
    network {
      port "p5672" {
        static = 5672
        to     = 5672
      }
      # bound to 127.0.0.1 by fleet: not exported; choose the address with the client's host_network.
      port "p15672" {
        static = 15672
        to     = 15672
      }
    }
    # volume mqdata: a host volume each client must declare (client { host_volume "mqdata" { path = ... } }), or change it to a CSI volume.
    volume "mqdata" {
      type   = "host"
      source = "mqdata"
    }
    task "rabbitmq" {
      driver       = "docker"
      kill_timeout = "1m"
      config {
        image = "rabbitmq:3.13-management"
        ports = ["p5672", "p15672"]
      }
      env {
        RABBITMQ_DEFAULT_USER = "shop"
      }
      volume_mount {
        volume      = "mqdata"
        destination = "/var/lib/rabbitmq"
        read_only   = false
      }
      # secrets (RABBITMQ_DEFAULT_PASS from env:SHOP_MQ_PASSWORD as SHOP_MQ_PASSWORD) from the Nomad variable nomad/jobs/shop (see the top of this file).
      template {
        data        = "{{ with nomadVar \"nomad/jobs/shop\" }}\nRABBITMQ_DEFAULT_PASS={{ index . \"SHOP_MQ_PASSWORD\" | toJSON }}\n{{ end }}\n"
        destination = "secrets/fleet.env"
        env         = true
      }
      # no resources in fleet.yaml: Nomad reserves its defaults (100 MHz, 300 MB).
      service {
        name = "shop-rabbitmq"
        # healthcheck start_period 20s: not exported; Nomad counts failures from the start (check_restart's grace restarts the task, which fleet does not).
        check {
          type                     = "script"
          command                  = "rabbitmq-diagnostics"
          args                     = ["-q", "ping"]
          interval                 = "1s"
          timeout                  = "2s"
          failures_before_critical = 3
        }
      }
    }
  }
  # depends_on [postgres, redis, rabbitmq]: not exported; the orchestrator starts services in no order, so each must wait for what it needs itself.
  group "orders" {
    count = 3
    # fleet's hosts selector "role=app"; node names are the inventory's host names.
    # the clients need the inventory's labels as meta:
    #   app1: client { meta { role = "app" } }
    #   app1: client { meta { zone = "a" } }
    #   app2: client { meta { role = "app" } }
    #   app2: client { meta { zone = "b" } }
    #   app3: client { meta { role = "app" } }
    #   app3: client { meta { zone = "c" } }
    #   app4: client { meta { role = "app" } }
    #   app4: client { meta { zone = "a" } }
    constraint {
      attribute = "${meta.role}"
      operator  = "="
      value     = "app"
    }
    constraint {
      operator = "distinct_hosts"
      value    = "true"
    }
    spread {
      attribute = "${meta.zone}"
    }
    # update.order stop-first: Nomad stops an old allocation before placing its replacement.
    update {
      max_parallel      = 1
      health_check      = "checks"
      min_healthy_time  = "30s"
      healthy_deadline  = "2m"
      progress_deadline = "10m"
      auto_revert       = true
    }
    network {
      port "p8080" {
        static = 8080
        to     = 8080
      }
    }
    task "orders" {
      driver       = "docker"
      kill_timeout = "30s"
      config {
        image = "registry.shop.example.com/shop/orders:2.3.1"
        ports = ["p8080"]
      }
      env {
        AMQP_HOST              = "203.0.113.33"
        DB_HOST                = "203.0.113.31"
        JAVA_OPTS              = "-Xms512m -Xmx1g"
        REDIS_HOST             = "203.0.113.32"
        SPRING_PROFILES_ACTIVE = "production"
      }
      # secrets (AMQP_PASSWORD from env:SHOP_MQ_PASSWORD as SHOP_MQ_PASSWORD, DB_PASSWORD from env:SHOP_DB_PASSWORD as SHOP_DB_PASSWORD) from the Nomad variable nomad/jobs/shop (see the top of this file).
      template {
        data        = "{{ with nomadVar \"nomad/jobs/shop\" }}\nAMQP_PASSWORD={{ index . \"SHOP_MQ_PASSWORD\" | toJSON }}\nDB_PASSWORD={{ index . \"SHOP_DB_PASSWORD\" | toJSON }}\n{{ end }}\n"
        destination = "secrets/fleet.env"
        env         = true
      }
      # resources.cpus 2: Nomad reserves CPU in MHz; 1000 MHz a core is assumed.
      resources {
        cpu    = 2000
        memory = 1536
      }
      service {
        name = "shop-orders"
        # healthcheck start_period 1m: not exported; Nomad counts failures from the start (check_restart's grace restarts the task, which fleet does not).
        check {
          type                     = "http"
          path                     = "/actuator/health"
          port                     = "p8080"
          interval                 = "2s"
          timeout                  = "2s"
          failures_before_critical = 3
        }
      }
    }
  }
  # depends_on [orders]: not exported; the orchestrator starts services in no order, so each must wait for what it needs itself.
  group "storefront" {
    # fleet runs one instance on every selected host (node1, node2): a count of the inventory's hosts, one per node. A system job does this by itself, but a job has one type.
    count = 2
    # fleet's hosts selector "role=web"; node names are the inventory's host names.
    # the clients need the inventory's labels as meta:
    #   node1: client { meta { role = "web" } }
    #   node2: client { meta { role = "web" } }
    constraint {
      attribute = "${meta.role}"
      operator  = "="
      value     = "web"
    }
    constraint {
      operator = "distinct_hosts"
      value    = "true"
    }
    # update.order stop-first: Nomad stops an old allocation before placing its replacement.
    update {
      max_parallel      = 1
      health_check      = "checks"
      min_healthy_time  = "5s"
      healthy_deadline  = "2m"
      progress_deadline = "10m"
      auto_revert       = true
    }
    network {
      port "p3000" {
        static = 3000
        to     = 3000
      }
    }
    task "storefront" {
      driver       = "docker"
      kill_timeout = "10s"
      config {
        image = "registry.shop.example.com/shop/storefront:5.0.2"
        ports = ["p3000"]
      }
      env {
        API_URL  = "https://shop.example.com/api"
        NODE_ENV = "production"
      }
      resources {
        memory = 512
      }
      service {
        name = "shop-storefront"
        check {
          type                     = "http"
          path                     = "/healthz"
          port                     = "p3000"
          interval                 = "1s"
          timeout                  = "2s"
          failures_before_critical = 3
        }
      }
    }
  }
}
