# The Azure Storage queues Sluice pipelines use (their queues, poison queues and dead-letter
# queues), in one storage account. Input: `sluice plan --terraform azure <pipeline files> >
# azure.auto.tfvars.json`, plus `storage_account_name`.

terraform {
  required_version = ">= 1.5"
  required_providers {
    azurerm = {
      source  = "hashicorp/azurerm"
      version = ">= 3.0, < 5.0"
    }
  }
}

variable "storage_account_name" {
  description = "The storage account that holds the queues."
  type        = string
}

variable "queues" {
  description = "Queue names."
  type        = set(string)
}

resource "azurerm_storage_queue" "queue" {
  for_each             = var.queues
  name                 = each.key
  storage_account_name = var.storage_account_name
}
